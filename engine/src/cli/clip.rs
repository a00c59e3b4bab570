//! `cascade clip`: filter webdataset shards by CLIP image/caption similarity, outside any
//! pipeline.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context;
use cascade_stages::clip::{
    filter_shard, ClipDevice, ClipFilter, EmbeddingDtype, FilterOptions, ModelSettings, ShardOutputs, WeightsSource,
};
use cascade_stages::stage::ArtifactLocation;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Options of `cascade clip`.
#[derive(Debug, Args)]
pub(crate) struct ClipArgs {
    /// Webdataset tar shards (`KEY.jpg` + `KEY.txt` [+ `KEY.json`] per sample): paths or
    /// `s3://` URLs.
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// Where the kept shards, `metadata/`, `img_emb/` and `text_emb/` go: a directory, a
    /// `file:///` URL or `s3://bucket/prefix`; each shard's in a folder named after the shard's
    /// own folder (`shards/pairs-1/00000.tar` → `<out>/pairs-1/`).
    #[arg(long, short)]
    out: ArtifactLocation,
    /// Hugging Face `CLIPModel` weights: a `model.safetensors` file, or `hf:OWNER/REPO[@REVISION]`
    /// (e.g. `hf:openai/clip-vit-base-patch32`), downloaded once into the Hugging Face cache
    /// (`HF_HOME`, `HF_ENDPOINT` and `HF_TOKEN` as in Python).
    #[arg(long)]
    weights: WeightsSource,
    /// Its `config.json` (default: the hub model's own, or ViT-B/32 sizes for a file).
    #[arg(long)]
    model_config: Option<PathBuf>,
    /// Keep pairs with cosine similarity at least this (LAION-5B 0.28, LAION-400M 0.3).
    #[arg(long, default_value_t = 0.28, allow_negative_numbers = true)]
    threshold: f32,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: ClipDevice,
    /// Samples per model call.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Image decoding threads (default: one per CPU core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Write the embeddings as float32 instead of float16.
    #[arg(long)]
    f32_embeddings: bool,
}

pub(crate) fn run(args: &ClipArgs) -> anyhow::Result<()> {
    let settings =
        ModelSettings { weights: args.weights.clone(), config: args.model_config.clone(), device: args.device };
    let (store, out) = super::open_out(&args.out)?;
    let filter = ClipFilter::load(&settings).with_context(|| format!("loading {}", args.weights))?;
    let options = FilterOptions {
        threshold: args.threshold,
        batch_size: args.batch_size,
        threads: args.threads,
        embeddings: if args.f32_embeddings { EmbeddingDtype::Float32 } else { EmbeddingDtype::Float16 },
    };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{msg:30!} {spinner} {pos} samples {per_sec} elapsed {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    let started = Instant::now();
    let (mut done_before, mut kept, mut failures) = (0u64, 0u64, 0usize);
    for shard in &args.shards {
        bar.set_message(shard.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        let result = store.fetch(shard).map_err(anyhow::Error::from).and_then(|local| {
            let folder = ShardOutputs::folder_for(shard, out.path());
            let mut summary = filter_shard(&filter, local.path(), &folder, &options, |done| bar.set_position(done_before + done))?;
            summary.input.clone_from(shard);
            summary.publish(&out)?;
            Ok(summary)
        });
        match result {
            Ok(summary) => {
                done_before += summary.samples;
                kept += summary.kept;
                bar.suspend(|| match serde_json::to_string(&summary) {
                    Ok(line) => println!("{line}"),
                    Err(e) => eprintln!("{}: cannot print the summary: {e}", shard.display()),
                });
            }
            Err(e) => {
                failures += 1;
                bar.suspend(|| eprintln!("{}", super::failure_line(shard, &e)));
            }
        }
    }
    bar.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} shards, {done_before} samples, {kept} kept in {seconds:.1} s ({:.1} samples/s)",
        args.shards.len(),
        done_before as f64 / seconds.max(1e-9)
    );
    if failures > 0 {
        anyhow::bail!("{failures} of {} shards failed", args.shards.len());
    }
    Ok(())
}
