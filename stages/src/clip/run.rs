//! [`filter_shard`]: one webdataset tar in, the kept samples, their metadata and embeddings
//! out. Samples stream through in batches; only the kept rows' metadata and embeddings are
//! held until the end of the shard. Outputs are written as `*.partial` and renamed when
//! complete.

use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::error::ClipError;
use super::filter::ClipFilter;
use super::npy::write_npy;
use super::options::{FilterOptions, FilterSummary, ShardOutputs};
use super::parquet_out::{write_rows, KeptRow};
use super::preprocess::preprocess_batch;
use super::shard::{for_each_sample, Sample, SampleWriter};

/// Filters `input` into `out_dir` on a pool of `options.threads` threads (rayon's global
/// pool when 0). `progress` gets the number of samples read so far after each batch.
///
/// # Errors
///
/// [`ClipError::Read`] when the shard cannot be opened, [`ClipError::Write`] or
/// [`ClipError::Parquet`] when an output cannot be written, [`ClipError::ThreadPool`].
/// Undecodable images, samples without image or caption and a truncated tar are counted in
/// the summary, not errors.
pub fn filter_shard(
    filter: &ClipFilter,
    input: &Path,
    out_dir: &Path,
    options: &FilterOptions,
    mut progress: impl FnMut(u64),
) -> Result<FilterSummary, ClipError> {
    let pool = match options.threads {
        0 => None,
        n => Some(rayon::ThreadPoolBuilder::new().num_threads(n).thread_name(|i| format!("clip-prep-{i}")).build()?),
    };
    filter_shard_in(pool.as_ref(), filter, input, out_dir, options, |done| {
        progress(done);
        ControlFlow::Continue(())
    })
}

/// [`filter_shard`] on the caller's pool (the engine's per-stage pool; `options.threads` is
/// ignored). After each batch `progress` gets the samples read so far and may stop the shard
/// with [`ControlFlow::Break`]: nothing is published then, and the error is
/// [`ClipError::Cancelled`].
///
/// # Errors
///
/// As [`filter_shard`], and [`ClipError::Cancelled`].
pub fn filter_shard_in(
    pool: Option<&rayon::ThreadPool>,
    filter: &ClipFilter,
    input: &Path,
    out_dir: &Path,
    options: &FilterOptions,
    mut progress: impl FnMut(u64) -> ControlFlow<()>,
) -> Result<FilterSummary, ClipError> {
    let outputs = ShardOutputs::for_input(input, out_dir);
    let file = File::open(input).map_err(|source| ClipError::Read { path: input.to_owned(), source })?;
    for path in [&outputs.shard, &outputs.metadata, &outputs.image_embeddings, &outputs.text_embeddings] {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| ClipError::Write { path: dir.to_owned(), source })?;
        }
    }
    let shard_partial = partial(&outputs.shard);
    let tar_out = File::create(&shard_partial).map_err(|source| ClipError::Write { path: shard_partial.clone(), source })?;
    let mut run = ShardRun {
        filter,
        pool,
        options,
        writer: SampleWriter::new(BufWriter::with_capacity(1 << 20, tar_out)),
        summary: FilterSummary { input: input.to_owned(), threshold: options.threshold, ..FilterSummary::default() },
        rows: Vec::new(),
        image_emb: Vec::new(),
        text_emb: Vec::new(),
        similarity_sum: 0.0,
        shard_partial: shard_partial.clone(),
    };
    let ended = match run.read_all(BufReader::with_capacity(1 << 20, file), &mut progress) {
        Ok(ended) => ended,
        Err(e) => {
            run.discard();
            return Err(e);
        }
    };
    if let Some(e) = ended {
        tracing::warn!(shard = %input.display(), error = %e, "Shard ends early; samples before the damage are kept.");
        run.summary.truncated = Some(e.to_string());
    }
    run.finish(outputs)
}

/// `x.tar` → `x.tar.partial`.
fn partial(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".partial");
    name.into()
}

/// Moves a finished `*.partial` file into place.
fn publish(path: &Path) -> Result<(), ClipError> {
    std::fs::rename(partial(path), path).map_err(|source| ClipError::Write { path: path.to_owned(), source })
}

/// The state of one shard being filtered.
struct ShardRun<'a> {
    filter: &'a ClipFilter,
    pool: Option<&'a rayon::ThreadPool>,
    options: &'a FilterOptions,
    writer: SampleWriter<BufWriter<File>>,
    summary: FilterSummary,
    rows: Vec<KeptRow>,
    image_emb: Vec<f32>,
    text_emb: Vec<f32>,
    similarity_sum: f64,
    shard_partial: PathBuf,
}

impl ShardRun<'_> {
    /// Embeds one batch and writes its kept samples.
    fn process(&mut self, batch: Vec<Sample>) -> Result<(), ClipError> {
        self.summary.samples += batch.len() as u64;
        let mut usable = Vec::with_capacity(batch.len());
        for sample in batch {
            match (sample.image().is_some(), sample.caption()) {
                (false, _) => self.summary.missing_image += 1,
                (true, None) => self.summary.missing_caption += 1,
                (true, Some(caption)) => usable.push((sample, caption)),
            }
        }
        let images: Vec<&[u8]> = usable.iter().filter_map(|(s, _)| s.image()).collect();
        let side = self.filter.image_size();
        let decoded = preprocess_batch(self.pool, &images, side);
        let mut pixels = Vec::new();
        let mut embedded = Vec::with_capacity(usable.len());
        for ((sample, caption), result) in usable.into_iter().zip(decoded) {
            match result {
                Ok(p) => {
                    pixels.extend(p);
                    embedded.push((sample, caption));
                }
                Err(e) => {
                    tracing::debug!(key = %sample.key, error = %e, "Undecodable image skipped.");
                    self.summary.corrupt_images += 1;
                }
            }
        }
        if embedded.is_empty() {
            return Ok(());
        }
        let captions: Vec<&str> = embedded.iter().map(|(_, c)| c.as_str()).collect();
        let mut image_emb = self.filter.embed_pixels(pixels, embedded.len());
        let mut text_emb = self.filter.embed_captions(&captions);
        let dim = image_emb.len() / embedded.len();
        normalize_rows(&mut image_emb, dim);
        normalize_rows(&mut text_emb, dim);
        self.summary.embedded += embedded.len() as u64;
        for (i, (sample, caption)) in embedded.into_iter().enumerate() {
            let (img, txt) = (&image_emb[i * dim..(i + 1) * dim], &text_emb[i * dim..(i + 1) * dim]);
            let similarity: f32 = img.iter().zip(txt).map(|(a, b)| a * b).sum();
            self.similarity_sum += f64::from(similarity);
            if similarity < self.options.threshold {
                continue;
            }
            self.writer.append(&sample).map_err(|source| ClipError::Write { path: self.shard_partial.clone(), source })?;
            self.image_emb.extend_from_slice(img);
            self.text_emb.extend_from_slice(txt);
            self.rows.push(KeptRow { url: sample.url(), key: sample.key, caption, similarity });
        }
        Ok(())
    }

    /// Embeds every sample of `input` batch by batch, reporting progress after each batch;
    /// returns why the tar ended early, if it did.
    fn read_all(
        &mut self,
        input: impl std::io::Read,
        progress: &mut impl FnMut(u64) -> ControlFlow<()>,
    ) -> Result<Option<std::io::Error>, ClipError> {
        let batch_size = self.options.batch_size.max(1);
        let mut batch = Vec::with_capacity(batch_size);
        let mut report = |run: &Self| match progress(run.summary.samples) {
            ControlFlow::Continue(()) => Ok(()),
            ControlFlow::Break(()) => Err(ClipError::Cancelled),
        };
        let ended = for_each_sample(input, |sample| {
            batch.push(sample);
            if batch.len() == batch_size {
                self.process(std::mem::take(&mut batch))?;
                report(self)?;
            }
            Ok::<_, ClipError>(())
        })?;
        self.process(batch)?;
        report(self)?;
        Ok(ended)
    }

    /// Removes the partly written shard of a run that stops before the end.
    fn discard(&self) {
        if let Err(e) = std::fs::remove_file(&self.shard_partial) {
            tracing::debug!(file = %self.shard_partial.display(), error = %e, "Partial shard not removed.");
        }
    }

    /// Writes the metadata and embeddings and moves every output into place.
    fn finish(mut self, outputs: ShardOutputs) -> Result<FilterSummary, ClipError> {
        let write_err = |path: &Path| {
            let path = path.to_owned();
            move |source| ClipError::Write { path, source }
        };
        self.writer.finish().and_then(|mut w| std::io::Write::flush(&mut w)).map_err(write_err(&outputs.shard))?;
        let kept = self.rows.len();
        write_rows(&partial(&outputs.metadata), &self.rows)?;
        let dim = self.filter.config().projection_dim;
        for (path, values) in [(&outputs.image_embeddings, &self.image_emb), (&outputs.text_embeddings, &self.text_emb)] {
            let tmp = partial(path);
            let file = File::create(&tmp).map_err(write_err(&tmp))?;
            write_npy(BufWriter::new(file), values, kept, dim, self.options.embeddings).map_err(write_err(&tmp))?;
        }
        for path in [&outputs.shard, &outputs.metadata, &outputs.image_embeddings, &outputs.text_embeddings] {
            publish(path)?;
        }
        self.summary.kept = kept as u64;
        if self.summary.embedded > 0 {
            self.summary.mean_similarity = (self.similarity_sum / self.summary.embedded as f64) as f32;
        }
        self.summary.outputs = outputs;
        tracing::info!(
            shard = %self.summary.input.display(), samples = self.summary.samples, kept = kept,
            corrupt = self.summary.corrupt_images, "CLIP shard filtered."
        );
        Ok(self.summary)
    }
}

/// Scales each `dim`-wide row to unit length (rows of zeros stay zero).
fn normalize_rows(values: &mut [f32], dim: usize) {
    for row in values.chunks_exact_mut(dim) {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|v| *v /= norm);
        }
    }
}
