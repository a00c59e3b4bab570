//! [`ArtifactStore`]: where stages read their inputs and publish their outputs.
//!
//! All artifacts live under one root, `[engine] artifacts`, an [`ArtifactLocation`]:
//! - a local directory (a plain path, or a `file:///` URL): outputs are written in place and the
//!   next stage is given their paths;
//! - an S3 bucket and key prefix, `s3://bucket/prefix` (feature `s3`): outputs are written in a
//!   private staging directory, then uploaded whole, as one `PUT` or as a multipart upload that
//!   is completed only after its last part, so no object ever shows under its final key
//!   half-written. The next stage is given `s3://bucket/key` URLs, which any worker on any
//!   machine can read. Credentials, region and endpoint come from the usual `AWS_*` environment
//!   variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`,
//!   `AWS_ALLOW_HTTP` for a plain-HTTP endpoint).
//!
//! A stage writes one job's files under [`OutputDir::path`] (under `*.partial` names renamed
//! when complete, as the built-in stages do), then [`publish`](OutputDir::publish)es each one,
//! which returns the reference to put in the job's output. It reads an input through
//! [`ArtifactStore::fetch`], which gives a local file: the path itself, or for an `s3://` URL a
//! temporary copy streamed to disk and removed when dropped.
//!
//! ```
//! use cascade_stages::stage::{ArtifactLocation, ArtifactStore};
//!
//! let root = std::env::temp_dir().join("cascade-artifacts-doc");
//! let store = ArtifactStore::open("file:///tmp/x".parse().unwrap()).unwrap();
//! assert_eq!(store.location(), &ArtifactLocation::Local("/tmp/x".into()));
//! let store = ArtifactStore::local(&root);
//! let out = store.output("word-count").unwrap();
//! std::fs::write(out.path().join("job-1.json"), "{}").unwrap();
//! let reference = out.publish(&out.path().join("job-1.json")).unwrap();
//! assert_eq!(reference, root.join("word-count/job-1.json"));
//! assert_eq!(store.fetch(&reference).unwrap().path(), reference);
//! # std::fs::remove_dir_all(root).unwrap();
//! ```

#[cfg(feature = "s3")]
mod s3;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::StageError;

/// A problem with an artifact location, or with reading or publishing an artifact.
#[derive(Debug, thiserror::Error)]
#[must_use]
pub enum ArtifactError {
    /// `[engine] artifacts` (or an input URL) is not a location this store understands.
    #[error("invalid artifact location {location:?}: {reason}")]
    Location {
        /// The location as given.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An `s3://` location in a build without the `s3` feature.
    #[error("{location}: this build has no S3 support (cascade-stages feature `s3`)")]
    Unsupported {
        /// The location as given.
        location: String,
    },
    /// An input object does not exist.
    #[error("{reference}: no such object")]
    NotFound {
        /// The reference read.
        reference: String,
    },
    /// A local file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The object store refused or failed a request (after its own retries).
    #[error("{reference}: {message}")]
    Remote {
        /// The object (or bucket) asked for.
        reference: String,
        /// The store's error.
        message: String,
    },
}

impl ArtifactError {
    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io { path: path.to_owned(), source }
    }
}

/// What a stage does with a job whose artifact could not be had or kept: a missing input is
/// the previous stage's mistake, a bad location can never work, the rest may pass.
impl From<ArtifactError> for StageError {
    fn from(error: ArtifactError) -> Self {
        match error {
            ArtifactError::NotFound { .. } => StageError::invalid(error),
            ArtifactError::Location { .. } | ArtifactError::Unsupported { .. } => StageError::fatal(error),
            ArtifactError::Io { .. } | ArtifactError::Remote { .. } => StageError::transient(error),
        }
    }
}

/// The root of the artifacts: a local directory, or an S3 bucket and key prefix. Parsed from
/// (and written as) a plain path, `file:///absolute/path` or `s3://bucket[/prefix]`.
///
/// ```
/// use cascade_stages::stage::ArtifactLocation;
///
/// let s3: ArtifactLocation = "s3://laion/runs/2026/".parse().unwrap();
/// assert_eq!(s3, ArtifactLocation::S3 { bucket: "laion".into(), prefix: "runs/2026".into() });
/// assert_eq!(s3.join("wat"), "s3://laion/runs/2026/wat");
/// assert_eq!("artifacts".parse::<ArtifactLocation>().unwrap().join("wat"), "artifacts/wat");
/// assert!("gs://bucket".parse::<ArtifactLocation>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ArtifactLocation {
    /// A local directory.
    Local(PathBuf),
    /// A bucket of an S3-compatible object store.
    S3 {
        /// The bucket.
        bucket: String,
        /// Key prefix of every artifact, without leading or trailing `/` (may be empty).
        prefix: String,
    },
}

impl ArtifactLocation {
    /// Where the artifacts of `folder` (a stage's subdirectory) go, as a person reads it.
    #[must_use]
    pub fn join(&self, folder: &str) -> String {
        self.child(folder).to_string()
    }

    /// The location of `folder` (a stage's subdirectory) under this one.
    #[must_use]
    pub fn child(&self, folder: &str) -> Self {
        match self {
            Self::Local(root) => Self::Local(root.join(folder)),
            Self::S3 { bucket, prefix } => Self::S3 { bucket: bucket.clone(), prefix: key(prefix, folder) },
        }
    }
}

/// `prefix/name`, or either one alone when the other is empty.
fn key(prefix: &str, name: &str) -> String {
    match (prefix.is_empty(), name.is_empty()) {
        (true, _) => name.to_owned(),
        (_, true) => prefix.to_owned(),
        _ => format!("{prefix}/{name}"),
    }
}

/// The scheme of `text` when it is written as a URL (`scheme://…`).
fn scheme(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once("://")?;
    let valid = scheme.len() > 1 && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

/// `s3://bucket/key` → `(bucket, key)`.
fn split_s3(text: &str) -> Option<(&str, &str)> {
    let rest = text.strip_prefix("s3://")?;
    Some(rest.split_once('/').unwrap_or((rest, "")))
}

/// `s3://bucket/key` → `Some((bucket, key))`; `None` for a reference that is no `s3://` URL.
///
/// # Errors
/// [`ArtifactError::Location`] for an `s3://` URL that names no object.
fn object_url(reference: &Path) -> Result<Option<(&str, &str)>, ArtifactError> {
    let Some((bucket, object)) = reference.to_str().and_then(split_s3) else {
        return Ok(None);
    };
    if bucket.is_empty() || object.is_empty() || object.ends_with('/') {
        let reason = "not an object URL (s3://bucket/key)".to_owned();
        return Err(ArtifactError::Location { location: reference.display().to_string(), reason });
    }
    Ok(Some((bucket, object)))
}

impl FromStr for ArtifactLocation {
    type Err = ArtifactError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid = |reason: &str| ArtifactError::Location { location: text.to_owned(), reason: reason.to_owned() };
        match scheme(text) {
            None => Ok(Self::Local(PathBuf::from(text))),
            Some("file") => {
                let path = text["file://".len()..].strip_prefix("localhost").unwrap_or(&text["file://".len()..]);
                if !path.starts_with('/') {
                    return Err(invalid("a file URL names an absolute path on this machine (file:///path)"));
                }
                Ok(Self::Local(PathBuf::from(path)))
            }
            Some("s3") => {
                let (bucket, prefix) = split_s3(text).unwrap_or_default();
                if bucket.is_empty() {
                    return Err(invalid("no bucket (s3://bucket/prefix)"));
                }
                Ok(Self::S3 { bucket: bucket.to_owned(), prefix: prefix.trim_matches('/').to_owned() })
            }
            Some(_) => Err(invalid("artifacts are a local path, a file:/// URL or an s3:// URL")),
        }
    }
}

impl TryFrom<String> for ArtifactLocation {
    type Error = ArtifactError;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl fmt::Display for ArtifactLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Local(root) => write!(f, "{}", root.display()),
            Self::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}"),
            Self::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}"),
        }
    }
}

impl From<ArtifactLocation> for String {
    fn from(location: ArtifactLocation) -> Self {
        location.to_string()
    }
}

/// The artifact store of a worker: reads inputs ([`fetch`](Self::fetch)) and makes output
/// directories whose files are published under the root ([`output`](Self::output)). Cheap to
/// clone; one S3 client per bucket is shared by the whole process.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    location: ArtifactLocation,
}

impl ArtifactStore {
    /// The store at `location`. For S3 the bucket's client is made now, so that a bad
    /// `AWS_*` setting shows at startup.
    ///
    /// # Errors
    /// [`ArtifactError::Unsupported`] for S3 without the `s3` feature,
    /// [`ArtifactError::Remote`] when the S3 client cannot be made.
    pub fn open(location: ArtifactLocation) -> Result<Self, ArtifactError> {
        if let ArtifactLocation::S3 { bucket, .. } = &location {
            #[cfg(feature = "s3")]
            s3::Client::get()?.bucket(bucket)?;
            #[cfg(not(feature = "s3"))]
            return Err(ArtifactError::Unsupported { location: format!("s3://{bucket}") });
        }
        Ok(Self { location })
    }

    /// A store in the local directory `root`.
    #[must_use]
    pub fn local(root: impl Into<PathBuf>) -> Self {
        Self { location: ArtifactLocation::Local(root.into()) }
    }

    /// Where the artifacts go.
    #[must_use]
    pub fn location(&self) -> &ArtifactLocation {
        &self.location
    }

    /// The output directory of one job in `folder` (a stage's subdirectory, e.g. `wat`): the
    /// local directory `<root>/<folder>`, created if missing, or a fresh staging directory whose
    /// published files go to `<prefix>/<folder>/…` in the bucket.
    ///
    /// # Errors
    /// [`ArtifactError::Io`] when the directory cannot be made.
    pub fn output(&self, folder: &str) -> Result<OutputDir, ArtifactError> {
        OutputDir::new(&self.location.child(folder))
    }

    /// A stage's output directory: `out` when its settings name one (see [`OutputDir::at`]),
    /// otherwise `folder` in this store (see [`output`](Self::output)).
    ///
    /// # Errors
    /// As [`OutputDir::at`] and [`output`](Self::output).
    pub fn output_or(&self, out: Option<&ArtifactLocation>, folder: &str) -> Result<OutputDir, ArtifactError> {
        match out {
            Some(location) => OutputDir::at(location),
            None => self.output(folder),
        }
    }

    /// A local file with the content of `reference`: for an `s3://bucket/key` URL (of any
    /// bucket the credentials can read), a copy streamed into a temporary directory under the
    /// object's file name; for anything else (a path, an `http(s)://` URL a stage opens itself)
    /// the reference unchanged.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`] for a missing object, [`ArtifactError::Remote`] or
    /// [`ArtifactError::Io`] when it cannot be copied, [`ArtifactError::Unsupported`] for an
    /// `s3://` URL without the `s3` feature.
    pub fn fetch(&self, reference: &Path) -> Result<Fetched, ArtifactError> {
        let Some((bucket, object)) = object_url(reference)? else {
            return Ok(Fetched::unchanged(reference));
        };
        #[cfg(feature = "s3")]
        {
            let (dir, path) = s3::Client::get()?.download(bucket, object)?;
            Ok(Fetched { path, _copy: Some(dir) })
        }
        #[cfg(not(feature = "s3"))]
        Err(ArtifactError::Unsupported { location: format!("s3://{bucket}/{object}") })
    }

    /// `reference` opened for reading from start to end: an `s3://bucket/key` URL as a reader
    /// of the object as it downloads (nothing is written to disk), anything else unchanged
    /// ([`Input::Path`]: a path, or an `http(s)://` URL a stage opens itself).
    ///
    /// # Errors
    /// As [`fetch`](Self::fetch).
    pub fn open_input(&self, reference: &Path) -> Result<Input, ArtifactError> {
        let Some((bucket, object)) = object_url(reference)? else {
            return Ok(Input::Path(reference.to_owned()));
        };
        #[cfg(feature = "s3")]
        {
            let (reader, size) = s3::Client::get()?.reader(bucket, object)?;
            Ok(Input::Stream { reader: Box::new(reader), size })
        }
        #[cfg(not(feature = "s3"))]
        Err(ArtifactError::Unsupported { location: format!("s3://{bucket}/{object}") })
    }
}

/// An input opened by [`ArtifactStore::open_input`].
pub enum Input {
    /// The reference as it was: a local path, or a URL the stage opens itself.
    Path(PathBuf),
    /// An object in a store, read as it downloads; a read error names the object.
    Stream {
        /// The object's bytes.
        reader: Box<dyn std::io::Read + Send>,
        /// Its size in bytes.
        size: u64,
    },
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Path(path) => f.debug_tuple("Path").field(path).finish(),
            Self::Stream { size, .. } => f.debug_struct("Stream").field("size", size).finish_non_exhaustive(),
        }
    }
}

impl From<PathBuf> for ArtifactStore {
    fn from(root: PathBuf) -> Self {
        Self::local(root)
    }
}

impl From<&Path> for ArtifactStore {
    fn from(root: &Path) -> Self {
        Self::local(root)
    }
}

/// An input as a local file (see [`ArtifactStore::fetch`]); a temporary copy is removed when
/// this is dropped.
#[derive(Debug)]
pub struct Fetched {
    path: PathBuf,
    /// The temporary directory of a copy.
    #[cfg(feature = "s3")]
    _copy: Option<tempfile::TempDir>,
}

impl Fetched {
    fn unchanged(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            #[cfg(feature = "s3")]
            _copy: None,
        }
    }

    /// The file to read.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where one job writes its output files, and how they are published (see the module doc).
#[derive(Debug)]
pub struct OutputDir {
    target: Target,
}

#[derive(Debug)]
enum Target {
    /// Files are written where they stay.
    InPlace(PathBuf),
    /// Files are written in a staging directory and uploaded.
    #[cfg(feature = "s3")]
    Upload(s3::Staging),
}

impl OutputDir {
    /// The local directory `dir` (created if missing), whose files are published where they
    /// are: a stage's explicit `out` setting.
    ///
    /// # Errors
    /// [`ArtifactError::Io`] when the directory cannot be made.
    pub fn local(dir: impl Into<PathBuf>) -> Result<Self, ArtifactError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(ArtifactError::io(&dir))?;
        Ok(Self { target: Target::InPlace(dir) })
    }

    /// The output directory `location` itself, for a stage's explicit `out` setting: a local
    /// directory as [`local`](Self::local) makes it, or a fresh staging directory whose
    /// published files go under the location's key prefix in its bucket.
    ///
    /// # Errors
    /// As [`ArtifactStore::open`] for the location, and as [`local`](Self::local).
    pub fn at(location: &ArtifactLocation) -> Result<Self, ArtifactError> {
        Self::new(ArtifactStore::open(location.clone())?.location())
    }

    /// [`at`](Self::at) without checking the location first.
    fn new(location: &ArtifactLocation) -> Result<Self, ArtifactError> {
        match location {
            ArtifactLocation::Local(dir) => Self::local(dir),
            #[cfg(feature = "s3")]
            ArtifactLocation::S3 { bucket, prefix } => Ok(Self { target: Target::Upload(s3::Staging::new(bucket, prefix)?) }),
            #[cfg(not(feature = "s3"))]
            ArtifactLocation::S3 { .. } => Err(ArtifactError::Unsupported { location: location.to_string() }),
        }
    }

    /// The directory to write the files in.
    #[must_use]
    pub fn path(&self) -> &Path {
        match &self.target {
            Target::InPlace(dir) => dir,
            #[cfg(feature = "s3")]
            Target::Upload(staging) => staging.path(),
        }
    }

    /// Brings back `file` (a path under [`path`](Self::path)) as an earlier attempt of the job
    /// published it, and says whether it was there: in a local directory the file is simply
    /// checked for; in S3 the object of its key, if any, is copied into `file`. A restored file
    /// that is published again unchanged is not uploaded again. This is how a job resumes:
    /// a stage restores what it would otherwise redo, e.g. the download stage its finished
    /// shards.
    ///
    /// # Errors
    /// [`ArtifactError::Location`] for a file outside the directory, [`ArtifactError::Io`] or
    /// [`ArtifactError::Remote`] when the copy fails.
    pub fn restore(&self, file: &Path) -> Result<bool, ArtifactError> {
        self.check_inside(file)?;
        match &self.target {
            Target::InPlace(_) => Ok(file.is_file()),
            #[cfg(feature = "s3")]
            Target::Upload(staging) => staging.restore(file),
        }
    }

    /// [`ArtifactError::Location`] unless `file` is under [`path`](Self::path).
    fn check_inside(&self, file: &Path) -> Result<(), ArtifactError> {
        if file.starts_with(self.path()) {
            return Ok(());
        }
        let reason = format!("not under the output directory {}", self.path().display());
        Err(ArtifactError::Location { location: file.display().to_string(), reason })
    }

    /// Publishes `file`, a complete file under [`path`](Self::path), and returns the reference
    /// the next stage reads it by: its path in a local directory, or `s3://bucket/key` once it
    /// is uploaded (the staged copy is then removed).
    ///
    /// # Errors
    /// [`ArtifactError::Location`] for a file outside the directory, [`ArtifactError::Io`] or
    /// [`ArtifactError::Remote`] when the upload fails.
    pub fn publish(&self, file: &Path) -> Result<PathBuf, ArtifactError> {
        self.check_inside(file)?;
        match &self.target {
            Target::InPlace(_) => Ok(file.to_owned()),
            #[cfg(feature = "s3")]
            Target::Upload(staging) => staging.publish(file),
        }
    }
}
