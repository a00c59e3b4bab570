//! The S3 side of the artifact store (feature `s3`): one `object_store` client per bucket,
//! configured from the `AWS_*` environment, and one small tokio runtime that every worker
//! thread of the process blocks on for its transfers.
//!
//! Downloads stream the object to a file chunk by chunk; uploads send a file of up to
//! [`PART_BYTES`] as one `PUT`, a larger one as a multipart upload of that part size with at most
//! [`PARTS_IN_FLIGHT`] parts in flight, completed after the last part (or aborted on failure).
//! Memory per transfer is therefore bounded by a few parts, never the whole file.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use tempfile::TempDir;

use super::{key, ArtifactError};
use crate::stage::error::with_causes;

/// Files up to this size are uploaded in one `PUT`; larger ones in parts of this size.
pub(super) const PART_BYTES: usize = 8 << 20;

/// Parts of one multipart upload sent at the same time.
const PARTS_IN_FLIGHT: usize = 4;

/// Chunks of an object read ahead of a streaming reader (each as the HTTP body delivers it,
/// typically tens of KiB).
const CHUNKS_AHEAD: usize = 64;

/// The process's S3 clients and the runtime that drives them.
pub(super) struct Client {
    runtime: tokio::runtime::Runtime,
    buckets: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Client {
    /// The process's client, made on first use.
    ///
    /// # Errors
    /// [`ArtifactError::Remote`] when the runtime cannot start.
    pub(super) fn get() -> Result<&'static Self, ArtifactError> {
        static CLIENT: OnceLock<Client> = OnceLock::new();
        if let Some(client) = CLIENT.get() {
            return Ok(client);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("cascade-s3")
            .enable_all()
            .build()
            .map_err(|e| ArtifactError::Remote { reference: "s3://".to_owned(), message: format!("async runtime: {e}") })?;
        // The HTTP client's TLS uses ring (no C build); another provider installed first is
        // kept.
        let _ = rustls::crypto::ring::default_provider().install_default();
        Ok(CLIENT.get_or_init(|| Self { runtime, buckets: Mutex::default() }))
    }

    /// The client of `bucket`, made from the `AWS_*` environment on first use.
    ///
    /// # Errors
    /// [`ArtifactError::Remote`] when the settings are unusable.
    pub(super) fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, ArtifactError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(store) = buckets.get(bucket) {
            return Ok(Arc::clone(store));
        }
        // The HTTP client starts its connection pool in the runtime's context.
        let _context = self.runtime.enter();
        let store: Arc<dyn ObjectStore> = Arc::new(
            AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| remote(&format!("s3://{bucket}"), &e))?,
        );
        buckets.insert(bucket.to_owned(), Arc::clone(&store));
        Ok(store)
    }

    /// Streams `s3://bucket/key` into a new temporary directory under the key's file name;
    /// returns the directory (which removes the copy when dropped) and the file.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`], [`ArtifactError::Remote`], [`ArtifactError::Io`].
    pub(super) fn download(&self, bucket: &str, key: &str) -> Result<(TempDir, PathBuf), ArtifactError> {
        let dir = temp_dir("cascade-input-")?;
        let name = key.rsplit('/').next().unwrap_or(key);
        let path = dir.path().join(name);
        self.copy(bucket, key, &path)?;
        Ok((dir, path))
    }

    /// A reader of `s3://bucket/key` as it downloads, and the object's size: a task of the
    /// runtime reads ahead up to [`CHUNKS_AHEAD`] chunks while the caller consumes them.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`], [`ArtifactError::Remote`].
    pub(super) fn reader(&self, bucket: &str, key: &str) -> Result<(ObjectReader, u64), ArtifactError> {
        let reference = format!("s3://{bucket}/{key}");
        let store = self.bucket(bucket)?;
        let object = self.runtime.block_on(store.get(&ObjectPath::from(key))).map_err(|e| match e {
            object_store::Error::NotFound { .. } => ArtifactError::NotFound { reference: reference.clone() },
            other => remote(&reference, &other),
        })?;
        let size = object.meta.size;
        let (sender, chunks) = tokio::sync::mpsc::channel(CHUNKS_AHEAD);
        self.runtime.spawn(async move {
            let mut stream = object.into_stream();
            while let Some(chunk) = stream.next().await {
                // The reader was dropped: stop downloading.
                if sender.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        tracing::debug!(object = %reference, bytes = size, "Streaming an input artifact.");
        Ok((ObjectReader { reference, chunks, chunk: Bytes::new() }, size))
    }

    /// Streams `s3://bucket/key` into the file `path` (created or replaced) and returns its
    /// size.
    ///
    /// # Errors
    /// [`ArtifactError::NotFound`], [`ArtifactError::Remote`], [`ArtifactError::Io`].
    fn copy(&self, bucket: &str, key: &str, path: &Path) -> Result<usize, ArtifactError> {
        let reference = format!("s3://{bucket}/{key}");
        let store = self.bucket(bucket)?;
        let bytes = self.runtime.block_on(async {
            let object = store.get(&ObjectPath::from(key)).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => ArtifactError::NotFound { reference: reference.clone() },
                other => remote(&reference, &other),
            })?;
            let mut file = File::create(path).map_err(ArtifactError::io(path))?;
            let mut chunks = object.into_stream();
            let mut bytes = 0;
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk.map_err(|e| remote(&reference, &e))?;
                file.write_all(&chunk).map_err(ArtifactError::io(path))?;
                bytes += chunk.len();
            }
            Ok::<_, ArtifactError>(bytes)
        })?;
        tracing::debug!(object = %reference, bytes, "Copied an artifact.");
        Ok(bytes)
    }

    /// Uploads the complete local `file` as `s3://bucket/key`.
    ///
    /// # Errors
    /// [`ArtifactError::Io`], [`ArtifactError::Remote`].
    fn upload(&self, file: &Path, bucket: &str, key: &str) -> Result<(), ArtifactError> {
        let reference = format!("s3://{bucket}/{key}");
        let store = self.bucket(bucket)?;
        let size = file.metadata().map_err(ArtifactError::io(file))?.len();
        let location = ObjectPath::from(key);
        self.runtime.block_on(async {
            if size <= PART_BYTES as u64 {
                let bytes = std::fs::read(file).map_err(ArtifactError::io(file))?;
                store.put(&location, PutPayload::from(bytes)).await.map_err(|e| remote(&reference, &e))?;
                return Ok(());
            }
            let upload = store.put_multipart(&location).await.map_err(|e| remote(&reference, &e))?;
            let mut parts = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
            let mut input = File::open(file).map_err(ArtifactError::io(file))?;
            let mut buffer = vec![0; 1 << 20];
            loop {
                let read = match input.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(read) => read,
                    Err(e) => {
                        let _ = parts.abort().await;
                        return Err(ArtifactError::Io { path: file.to_owned(), source: e });
                    }
                };
                if let Err(e) = parts.wait_for_capacity(PARTS_IN_FLIGHT).await {
                    let _ = parts.abort().await;
                    return Err(remote(&reference, &e));
                }
                parts.write(&buffer[..read]);
            }
            // `finish` aborts the upload itself when a part or the completion fails.
            parts.finish().await.map_err(|e| remote(&reference, &e))?;
            Ok(())
        })?;
        tracing::debug!(object = %reference, bytes = size, "Published an artifact.");
        Ok(())
    }
}

/// An object read as it downloads ([`Client::reader`]); dropping it stops the download.
pub(super) struct ObjectReader {
    reference: String,
    chunks: tokio::sync::mpsc::Receiver<Result<Bytes, object_store::Error>>,
    /// What is left of the chunk being read.
    chunk: Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.chunk.is_empty() {
            match self.chunks.blocking_recv() {
                None => return Ok(0),
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => return Err(std::io::Error::other(format!("{}: {e}", self.reference))),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}

/// A job's staging directory for the bucket `bucket` and key prefix `prefix`.
#[derive(Debug)]
pub(super) struct Staging {
    bucket: String,
    prefix: String,
    dir: TempDir,
    /// Files copied back from their objects ([`restore`](Self::restore)), with the size and
    /// modification time they had then: published unchanged, they are not uploaded again.
    restored: Mutex<HashMap<PathBuf, (u64, SystemTime)>>,
}

impl Staging {
    /// A fresh staging directory (in the system's temporary directory, `TMPDIR`).
    ///
    /// # Errors
    /// [`ArtifactError::Io`].
    pub(super) fn new(bucket: &str, prefix: &str) -> Result<Self, ArtifactError> {
        let dir = temp_dir("cascade-output-")?;
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned(), dir, restored: Mutex::default() })
    }

    /// The directory files are written in.
    pub(super) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Uploads `file` (under [`path`](Self::path)) to the key of its relative path under the
    /// prefix, removes the local copy, and returns its `s3://` URL.
    ///
    /// # Errors
    /// [`ArtifactError::Io`], [`ArtifactError::Remote`].
    pub(super) fn publish(&self, file: &Path) -> Result<PathBuf, ArtifactError> {
        let key = self.key_of(file);
        let restored = self.restored.lock().unwrap_or_else(PoisonError::into_inner).remove(file);
        if restored.is_none() || restored != stamp(file) {
            Client::get()?.upload(file, &self.bucket, &key)?;
        }
        if let Err(e) = std::fs::remove_file(file) {
            tracing::debug!(file = %file.display(), error = %e, "Staged artifact not removed.");
        }
        Ok(PathBuf::from(format!("s3://{}/{key}", self.bucket)))
    }

    /// Copies the object of `file`'s key into `file`, if there is one; says whether there was.
    ///
    /// # Errors
    /// [`ArtifactError::Io`], [`ArtifactError::Remote`].
    pub(super) fn restore(&self, file: &Path) -> Result<bool, ArtifactError> {
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent).map_err(ArtifactError::io(parent))?;
        }
        match Client::get()?.copy(&self.bucket, &self.key_of(file), file) {
            Ok(_) => {}
            Err(ArtifactError::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e),
        }
        if let Some(stamp) = stamp(file) {
            self.restored.lock().unwrap_or_else(PoisonError::into_inner).insert(file.to_owned(), stamp);
        }
        Ok(true)
    }

    /// The key of `file` (under [`path`](Self::path)): its relative path under the prefix.
    fn key_of(&self, file: &Path) -> String {
        let relative: Vec<String> = file
            .strip_prefix(self.path())
            .unwrap_or(file)
            .components()
            .map(|part| part.as_os_str().to_string_lossy().into_owned())
            .collect();
        key(&self.prefix, &relative.join("/"))
    }
}

/// A file's size and modification time, to tell a restored file from one written since.
fn stamp(file: &Path) -> Option<(u64, SystemTime)> {
    let metadata = file.metadata().ok()?;
    Some((metadata.len(), metadata.modified().ok()?))
}

/// A new temporary directory named `prefix…`.
fn temp_dir(prefix: &str) -> Result<TempDir, ArtifactError> {
    tempfile::Builder::new().prefix(prefix).tempdir().map_err(ArtifactError::io(&std::env::temp_dir()))
}

/// An object store error about `reference`.
fn remote(reference: &str, error: &object_store::Error) -> ArtifactError {
    ArtifactError::Remote { reference: reference.to_owned(), message: with_causes(error) }
}
