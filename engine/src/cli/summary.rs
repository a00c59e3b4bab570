//! The closing summary of `cascade run --until-done`: what each local stage made, read back
//! from the jobs' recorded outputs in the tracker (so a resumed run counts earlier work too).

use std::collections::BTreeMap;

use cascade_stages::stage::ArtifactLocation;
use cascade_tracker::{JobStore, StageId, TrackerError};

use crate::runtime::StagePlan;

/// Jobs read for the summary at most (one query each).
const MAX_JOBS: i64 = 10_000;

/// Jobs fetched per page.
const PAGE: i64 = 1_000;

/// The numeric fields of one stage's outputs, summed.
#[derive(Debug, Default)]
pub(crate) struct StageTotals {
    /// Outputs read.
    pub(crate) jobs: u64,
    /// Every numeric leaf of the outputs by its path (`summary.pairs`, `status_dict.success`),
    /// array elements summed under the array's path.
    pub(crate) fields: BTreeMap<String, f64>,
}

impl StageTotals {
    fn add(&mut self, output: &str) {
        let text = output.strip_prefix("<!json!>").unwrap_or(output);
        if let Ok(value) = serde_json::from_str::<serde_json::Value>(text) {
            self.jobs += 1;
            add_leaves(&mut self.fields, "", &value);
        }
    }

    fn field(&self, path: &str) -> u64 {
        self.fields.get(path).copied().unwrap_or(0.0) as u64
    }

    /// One line about the outputs of stage kind `kind`: the figures that matter for the
    /// built-in kinds, the job count for others.
    pub(crate) fn describe(&self, kind: &str) -> String {
        let jobs = format!("{} job{}", self.jobs, if self.jobs == 1 { "" } else { "s" });
        match kind {
            "wat" => format!("{jobs}, {} image/alt-text pairs", self.field("summary.pairs")),
            "download" => {
                let mut reasons: Vec<(u64, &str)> = self
                    .fields
                    .iter()
                    .filter_map(|(path, n)| Some((*n as u64, path.strip_prefix("status_dict.")?)))
                    .collect();
                reasons.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(b.1)));
                let reasons: Vec<String> = reasons.iter().map(|(n, reason)| format!("{n} {reason}")).collect();
                format!(
                    "{jobs}, {} images: {} downloaded, {} failed to download, {} failed to resize ({})",
                    self.field("count"),
                    self.field("successes"),
                    self.field("failed_to_download"),
                    self.field("failed_to_resize"),
                    reasons.join(", ")
                )
            }
            "clip" => format!("{jobs}, {} samples, {} kept by CLIP", self.field("samples"), self.field("kept")),
            _ => jobs,
        }
    }
}

fn add_leaves(fields: &mut BTreeMap<String, f64>, path: &str, value: &serde_json::Value) {
    let join = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
    match value {
        serde_json::Value::Number(n) => *fields.entry(path.to_owned()).or_default() += n.as_f64().unwrap_or(0.0),
        serde_json::Value::Object(map) => map.iter().for_each(|(key, v)| add_leaves(fields, &join(key), v)),
        serde_json::Value::Array(items) => items.iter().for_each(|v| add_leaves(fields, path, v)),
        _ => {}
    }
}

/// Sums the outputs of every planned stage over the project's jobs (the first [`MAX_JOBS`]).
/// A stage's output is the next stage's recorded input, or the job's result at the last stage.
///
/// # Errors
/// Database errors.
pub(crate) fn stage_totals(store: &JobStore, plans: &[StagePlan]) -> Result<BTreeMap<StageId, StageTotals>, TrackerError> {
    let mut totals: BTreeMap<StageId, StageTotals> = plans.iter().map(|p| (p.stage, StageTotals::default())).collect();
    let mut offset = 0;
    while offset < MAX_JOBS {
        let page = store.jobs(None, None, offset, PAGE)?;
        if page.items.is_empty() {
            break;
        }
        offset += page.items.len() as i64;
        for job in page.items {
            let detail = store.job(job.id)?;
            for (stage, stage_totals) in &mut totals {
                let output = match detail.data.get(stage.index() + 1).cloned().flatten() {
                    Some(next_input) => Some(next_input),
                    None if detail.summary.stage == *stage => detail.result.clone(),
                    None => None,
                };
                if let Some(output) = output {
                    stage_totals.add(&output);
                }
            }
        }
    }
    Ok(totals)
}

/// Where a stage's files go, as a person reads it: its `out` setting, or `<artifacts>/<kind>`
/// (a path, or an `s3://bucket/prefix/kind` URL).
pub(crate) fn output_folder(plan: &StagePlan, artifacts: &ArtifactLocation) -> String {
    plan.settings
        .get("out")
        .and_then(serde_json::Value::as_str)
        .map_or_else(|| artifacts.join(&plan.kind), str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_numeric_leaves_of_outputs() {
        let mut totals = StageTotals::default();
        totals.add(r#"<!json!>{"count": 3, "successes": 2, "failed_to_download": 1, "failed_to_resize": 0, "status_dict": {"success": 2, "HTTP Error 404: Not Found": 1}, "shards": [{"count": 3}]}"#);
        totals.add(r#"{"count": 2, "successes": 2, "failed_to_download": 0, "failed_to_resize": 0, "status_dict": {"success": 2}}"#);
        totals.add("not json");
        assert_eq!(totals.jobs, 2);
        assert_eq!(totals.field("count"), 5);
        assert_eq!(totals.field("shards.count"), 3);
        assert_eq!(
            totals.describe("download"),
            "2 jobs, 5 images: 4 downloaded, 1 failed to download, 0 failed to resize (4 success, 1 HTTP Error 404: Not Found)"
        );
        assert_eq!(totals.describe("other"), "2 jobs");
    }

    #[test]
    fn output_folders_are_the_out_setting_a_local_folder_or_a_bucket_url() {
        let plan = |settings: serde_json::Value| StagePlan {
            stage: StageId::A,
            kind: "wat".to_owned(),
            workers: 1,
            queue: 1,
            threads: None,
            max_attempts: 1,
            settings,
        };
        let local: ArtifactLocation = "file:///data/artifacts".parse().unwrap();
        let bucket: ArtifactLocation = "s3://laion/run-1/".parse().unwrap();
        assert_eq!(output_folder(&plan(serde_json::json!({})), &local), "/data/artifacts/wat");
        assert_eq!(output_folder(&plan(serde_json::json!({})), &bucket), "s3://laion/run-1/wat");
        assert_eq!(output_folder(&plan(serde_json::json!({"out": "shards"})), &bucket), "shards");
    }
}
