//! [`Downloader`]: a pair shard's images fetched concurrently on one async runtime, decoded and
//! resized on a rayon pool, and written as webdataset shards.

use std::cell::RefCell;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use futures_util::{stream, TryStreamExt};
use rayon::ThreadPool;
use sha2::{Digest, Sha256};

use super::error::DownloadError;
use super::fetch::Fetcher;
use super::image::{process_image, ImageOptions, ProcessedImage};
use super::input::{read_rows, Row};
use super::options::{DownloadOptions, Source};
use super::replay::ReplayServer;
use super::summary::{Counts, DownloadSummary, Status};
use super::writer::{compute_key, SampleMeta, ShardPaths, ShardWriter};
use crate::stage::{ArtifactError, OutputDir};

/// Where a download stands, given to the caller after every sample.
#[derive(Debug, Clone, Copy)]
pub struct DownloadProgress<'a> {
    /// The pair shard being downloaded.
    pub input: &'a Path,
    /// Samples finished in this input, finished shards included.
    pub done: u64,
    /// Samples in this input.
    pub total: u64,
    /// The counts of the current shard.
    pub shard: &'a Counts,
}

/// Downloads pair shards; holds the HTTP client, its runtime and (for `source = "warc"`) the
/// replay server, so a worker builds it once.
pub struct Downloader {
    options: DownloadOptions,
    fetcher: Fetcher,
    runtime: tokio::runtime::Runtime,
    replay: Option<ReplayServer>,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader")
            .field("source", &self.options.source)
            .field("concurrency", &self.options.concurrency)
            .field("replay", &self.replay.as_ref().map(ReplayServer::proxy_url))
            .finish_non_exhaustive()
    }
}

impl Downloader {
    /// A downloader for `options`; starts the replay server when the source is WARC files.
    ///
    /// # Errors
    /// [`DownloadError::Settings`], [`DownloadError::Start`].
    pub fn new(options: DownloadOptions) -> Result<Self, DownloadError> {
        options.validate().map_err(DownloadError::Settings)?;
        let replay = match options.source {
            Source::Web => None,
            Source::Warc => Some(ReplayServer::start(&options.warcs).map_err(|e| DownloadError::Start(e.to_string()))?),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("cascade-download")
            .build()
            .map_err(|e| DownloadError::Start(format!("async runtime: {e}")))?;
        let fetcher = {
            // reqwest's client needs the runtime's context to start its connection pool.
            let _guard = runtime.enter();
            Fetcher::new(&options, replay.as_ref().map(ReplayServer::proxy_url).as_deref()).map_err(DownloadError::Start)?
        };
        Ok(Self { options, fetcher, runtime, replay })
    }

    /// The settings.
    #[must_use]
    pub fn options(&self) -> &DownloadOptions {
        &self.options
    }

    /// The folder the shards of `input` go to in `out`: `out/<input file stem>`.
    #[must_use]
    pub fn shard_dir(input: &Path, out: &Path) -> PathBuf {
        let stem = input.file_stem().map_or_else(|| "pairs".into(), |s| s.to_string_lossy().into_owned());
        out.join(stem)
    }

    /// Brings back, into `input`'s [`shard_dir`](Self::shard_dir) of `out`, the shards an
    /// earlier download of `input` published whole, so that [`download_file`](Self::download_file)
    /// keeps them instead of fetching their images again. Shards are written in order and each
    /// one's stats file is published last, so the finished ones are shard 0, 1, … up to the first
    /// without a stats file. In a local directory they are already there; with S3 they are
    /// copied back from the bucket (and not uploaded again).
    ///
    /// # Errors
    /// [`ArtifactError`] when a copy fails.
    pub fn restore_finished(out: &OutputDir, input: &Path) -> Result<(), ArtifactError> {
        let dir = Self::shard_dir(input, out.path());
        for shard_id in 0.. {
            let paths = ShardPaths::new(&dir, shard_id);
            if !(out.restore(&paths.stats)? && out.restore(&paths.tar)? && out.restore(&paths.parquet)?) {
                break;
            }
            tracing::debug!(shard = %paths.tar.display(), "Kept a shard an earlier attempt finished.");
        }
        Ok(())
    }

    /// Downloads the images of the pair shard `input` into shards under
    /// [`shard_dir`](Self::shard_dir), decoding and resizing on `pool` (rayon's global pool when
    /// `None`). Shards already complete are kept as they are. `progress` is called after every
    /// sample; breaking cancels (the unfinished shard stays `*.partial`).
    ///
    /// # Errors
    /// [`DownloadError::Input`], [`DownloadError::Write`], [`DownloadError::Parquet`],
    /// [`DownloadError::Cancelled`].
    pub fn download_file(
        &self,
        input: &Path,
        out: &Path,
        pool: Option<&ThreadPool>,
        progress: impl Fn(DownloadProgress<'_>) -> ControlFlow<()>,
    ) -> Result<DownloadSummary, DownloadError> {
        let (sources, names): (Vec<String>, Vec<String>) = self.options.columns().into_iter().unzip();
        let rows = read_rows(input, &sources)?;
        let dir = Self::shard_dir(input, out);
        std::fs::create_dir_all(&dir).map_err(|source| DownloadError::Write { path: dir.clone(), source })?;
        let total = rows.len() as u64;
        let per_shard = self.options.samples_per_shard;
        let mut summary = DownloadSummary { input: input.to_owned(), shards: Vec::new(), counts: Counts::default() };
        let mut done = 0u64;
        for (shard_id, chunk) in rows.chunks(per_shard).enumerate() {
            let paths = ShardPaths::new(&dir, shard_id);
            let shard = match paths.completed() {
                Some(shard) => shard,
                None => {
                    let writer = ShardWriter::create(paths, names.clone(), chunk.len())?;
                    let each = |counts: &Counts| progress(DownloadProgress { input, done: done + counts.count, total, shard: counts });
                    let job = ShardJob { rows: chunk, shard_id, url: names.len() - 1 };
                    let writer = match pool {
                        Some(pool) => pool.in_place_scope(|scope| self.fill(scope, job, writer, &each)),
                        None => rayon::in_place_scope(|scope| self.fill(scope, job, writer, &each)),
                    }?;
                    writer.finish()?
                }
            };
            done += shard.counts.count;
            summary.counts.merge(&shard.counts);
            summary.shards.push(shard);
        }
        Ok(summary)
    }

    /// Fetches and processes every row of one shard into `writer`.
    fn fill<'s>(
        &'s self,
        scope: &rayon::Scope<'s>,
        job: ShardJob<'s>,
        writer: ShardWriter,
        progress: &(dyn Fn(&Counts) -> ControlFlow<()> + 's),
    ) -> Result<ShardWriter, DownloadError> {
        let writer = RefCell::new(writer);
        let samples = stream::iter(job.rows.iter().enumerate().map(Ok::<_, DownloadError>));
        let run = samples.try_for_each_concurrent(self.options.concurrency, |(index, row)| {
            let writer = &writer;
            async move {
                let key = compute_key(index, job.shard_id, self.options.samples_per_shard);
                let outcome = self.sample(scope, row.get(job.url).cloned().flatten()).await;
                let mut writer = writer.borrow_mut();
                let (meta, jpeg) = outcome.into_meta(row.clone(), key);
                writer.add(meta, jpeg.as_deref())?;
                match progress(writer.counts()) {
                    ControlFlow::Continue(()) => Ok(()),
                    ControlFlow::Break(()) => Err(DownloadError::Cancelled),
                }
            }
        });
        self.runtime.block_on(run)?;
        Ok(writer.into_inner())
    }

    /// Downloads and processes one image.
    async fn sample<'s>(&'s self, scope: &rayon::Scope<'s>, url: Option<String>) -> Outcome {
        let Some(url) = url else { return Outcome::Download("no URL".to_owned()) };
        let body = match self.fetcher.fetch(&url).await {
            Ok(body) => body,
            Err(message) => return Outcome::Download(message),
        };
        let (done, result) = tokio::sync::oneshot::channel();
        let options: &'s ImageOptions = &self.options.image;
        scope.spawn(move |_| {
            let processed = process_image(&body, options).map_err(|e| e.to_string());
            let sha256 = processed.is_ok().then(|| hex(&Sha256::digest(&body)));
            let _ = done.send((processed, sha256));
        });
        match result.await {
            Ok((Ok(image), sha256)) => Outcome::Success(Box::new(image), sha256.unwrap_or_default()),
            Ok((Err(message), _)) => Outcome::Resize(message),
            // The pool dropped the task: only when it is shutting down.
            Err(_) => Outcome::Resize("image processing was interrupted".to_owned()),
        }
    }
}

/// The rows of one shard.
#[derive(Clone, Copy)]
struct ShardJob<'a> {
    rows: &'a [Row],
    shard_id: usize,
    /// Index of the URL among the row's columns.
    url: usize,
}

/// What became of one sample.
enum Outcome {
    Success(Box<ProcessedImage>, String),
    Download(String),
    Resize(String),
}

impl Outcome {
    /// The sample's metadata, and its JPEG for a success.
    fn into_meta(self, input: Row, key: String) -> (SampleMeta, Option<Vec<u8>>) {
        let failed = |status, message| SampleMeta {
            input: input.clone(),
            key: key.clone(),
            status,
            error_message: Some(message),
            width: None,
            height: None,
            original_width: None,
            original_height: None,
            exif: None,
            sha256: None,
        };
        match self {
            Self::Download(message) => (failed(Status::FailedToDownload, message), None),
            Self::Resize(message) => (failed(Status::FailedToResize, message), None),
            Self::Success(image, sha256) => {
                let image = *image;
                let size = |v: u32| Some(i32::try_from(v).unwrap_or(i32::MAX));
                let meta = SampleMeta {
                    input,
                    key,
                    status: Status::Success,
                    error_message: None,
                    width: size(image.width),
                    height: size(image.height),
                    original_width: size(image.original_width),
                    original_height: size(image.original_height),
                    exif: image.exif,
                    sha256: Some(sha256),
                };
                (meta, Some(image.jpeg))
            }
        }
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
