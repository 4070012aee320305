//! `pipe`: runs YAML pipelines of ML stages with a content-addressed cache.
//!
//! The binary (`src/main.rs` calls [`main`]) parses flags and dispatches one
//! function per subcommand; the work happens in the facade crate `pipe`. A
//! library, so that the test harness's `pipe-testing` binary is this same
//! program plus the toy stages and crash points.
//!
//! Exit codes: 0 success; 1 a stage or scoring failed; 2 bad usage or an invalid
//! pipeline; 3 the cache is unusable (locked past the timeout, missing
//! upstream outputs for `--only`/`--from`, nothing cached for `pipe report`, I/O
//! errors).

mod compare;
mod render;
mod score;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand, ValueEnum};
// The facade links every stage crate, so every kind is registered.
use crate::core::{
    Cache, DagFormat, Freshness, Override, Pipeline, PipelineError, RunError, RunOptions,
};
use crate::runtime::runtime;

#[derive(Parser)]
#[command(
    name = "pipe",
    version,
    about = "Run YAML pipelines of ML stages, cached by content."
)]
struct Cli {
    /// More log output (-v: debug, -vv: trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    /// Only errors.
    #[arg(short, long, global = true)]
    quiet: bool,
    /// Cache directory [env: PIPE_CACHE_DIR] [default: .pipe]
    #[arg(long, global = true)]
    cache_dir: Option<PathBuf>,
    /// Torch threads [env: PIPE_THREADS] [default: OMP_NUM_THREADS, else one per physical core]
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Keep denormal floats (by default they are flushed to zero, which keeps
    /// CPU training from slowing down as gradients get small).
    #[arg(long, global = true)]
    keep_denormals: bool,
    /// Seconds to wait for another `pipe` using the same cache (run, status, gc).
    #[arg(long, global = true, default_value_t = 600)]
    lock_timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the stale stages of a pipeline and reuse the cached ones.
    Run {
        pipeline: PathBuf,
        #[command(flatten)]
        settings: Settings,
        /// Run just this stage (repeatable); its inputs come from the cache.
        #[arg(long, value_name = "STAGE")]
        only: Vec<String>,
        /// Run this stage and everything downstream of it; upstream comes from the cache.
        #[arg(long, value_name = "STAGE")]
        from: Option<String>,
        /// Ignore the cache: run every selected stage.
        #[arg(long)]
        force: bool,
        /// One JSON event per line on stdout, for orchestrators.
        #[arg(long)]
        json: bool,
        /// At the end, write the run's report page (as `pipe report`), to
        /// FILE or out/report/<pipeline>.html.
        #[arg(long, value_name = "FILE", num_args = 0..=1, default_missing_value = "")]
        report: Option<PathBuf>,
    },
    /// Write one self-contained HTML page of the pipeline's last run, from
    /// the cache: the DAG with each stage's status, configs, training
    /// curves, evaluation, the submission. Opens from file://, no server.
    /// With several pipelines, or `--runs`, a page comparing their runs.
    Report {
        #[arg(required = true, value_name = "PIPELINE")]
        pipelines: Vec<PathBuf>,
        #[command(flatten)]
        settings: Settings,
        /// Compare the runs the cache remembers of each pipeline (its last
        /// 20, e.g. after `pipe compare --seeds`), not only the last.
        #[arg(long)]
        runs: bool,
        /// The page to write; by default out/report/<pipeline>.html, or
        /// out/report/compare.html for a comparison.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Say for each stage whether it is fresh, stale (and why) or never run.
    Status {
        pipeline: PathBuf,
        #[command(flatten)]
        settings: Settings,
        #[arg(long)]
        json: bool,
    },
    /// Print the pipeline's stages and wiring.
    Dag {
        pipeline: PathBuf,
        #[arg(long, value_enum, default_value_t = DagArg::Text)]
        format: DagArg,
    },
    /// List the registered stage kinds with their ports and config defaults.
    Stages {
        /// Only this kind.
        kind: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run several pipelines (cached stages reused) and compare their models:
    /// accuracy, macro-F1, train time, predict throughput.
    Compare {
        #[arg(required = true)]
        pipelines: Vec<PathBuf>,
        #[arg(long)]
        device: Option<String>,
        /// Override a config value in every pipeline: `stage.field=value` (repeatable).
        #[arg(long = "set", value_name = "STAGE.FIELD=VALUE")]
        set: Vec<String>,
        /// Run each pipeline once per seed and report mean ± sd: `--seeds 1,2,3`.
        #[arg(long, value_delimiter = ',')]
        seeds: Vec<u64>,
        /// JSON instead of a markdown table.
        #[arg(long)]
        json: bool,
    },
    /// Score records at scale with the model a pipeline trained: Parquet, CSV
    /// or JSON-lines files (a file, a directory of parts, a glob) in batches,
    /// into Parquet parts in OUTPUT. From a pipeline, runs it first (cached
    /// stages are reused) and uses the model, labels and vectorizer of its
    /// `predict` stage; or from a bundle written by `pipe bundle`.
    Score {
        /// A pipeline file, or a bundle directory.
        model: PathBuf,
        #[command(flatten)]
        settings: Settings,
        /// The records: a file, a directory (searched recursively) or a glob.
        #[arg(long)]
        input: String,
        /// The directory that receives `part-I-of-N.parquet` and its manifest per shard.
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value = "Text")]
        text_column: String,
        /// Carried into the output as its first column.
        #[arg(long)]
        id_column: Option<String>,
        /// More input columns to carry into the output (comma-separated, repeatable).
        #[arg(long = "keep", value_delimiter = ',', value_name = "COLUMN")]
        keep: Vec<String>,
        /// Also write the next most likely classes, up to this rank.
        #[arg(long, default_value_t = 1)]
        top_k: usize,
        /// Score only shard I of N (`--shard 0/4`): contiguous row ranges, split with no coordinator.
        #[arg(long, default_value = "0/1", value_name = "I/N")]
        shard: pipe_score::Shard,
        /// Rows read, scored and written at a time: what bounds memory.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=pipe_score::MAX_BATCH_ROWS as u64))]
        batch_rows: u64,
        /// Follow symbolic links to directories inside an input directory
        /// (each directory is still read once).
        #[arg(long)]
        follow_links: bool,
        /// One JSON event per line on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Write the trained classifier of a pipeline's `predict` stage to DIR:
    /// vectorizer, model and labels, self-contained, for `pipe score` and the
    /// Python package on machines without the pipeline or its cache.
    Bundle {
        pipeline: PathBuf,
        dir: PathBuf,
        #[command(flatten)]
        settings: Settings,
    },
    /// Remove cache entries that no existing pipeline's last run references.
    Gc {
        /// List what would be removed, remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

/// What changes a pipeline's keys without editing it.
#[derive(clap::Args)]
struct Settings {
    /// Override a config value, as if edited in the YAML: `stage.field=value` (repeatable).
    #[arg(long = "set", value_name = "STAGE.FIELD=VALUE")]
    set: Vec<String>,
    /// `auto`, `cpu` or `cuda[:N]`; overrides the pipeline's `device:`.
    #[arg(long)]
    device: Option<String>,
    /// Overrides the pipeline's `seed:`.
    #[arg(long)]
    seed: Option<u64>,
}

impl Settings {
    /// The pipeline with overrides and seed applied, and the resolved device.
    fn load(&self, path: &Path) -> anyhow::Result<(Pipeline, String)> {
        let mut pipeline = load_pipeline(path, &self.set)?;
        if let Some(seed) = self.seed {
            pipeline.seed = seed;
        }
        let device = resolve_device(self.device.as_deref(), &pipeline)?;
        Ok((pipeline, device))
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum DagArg {
    Text,
    Mermaid,
    Dot,
}

/// Runs `pipe` with the process's arguments.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    exit_cleanly_on_interrupt();
    // Before torch starts its thread pool: its threads inherit the setting.
    if !cli.keep_denormals {
        runtime::flush_denormals();
    }
    runtime::set_threads(cli.threads);
    init_logging(cli.verbose, cli.quiet);
    match dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(exit_code(&error))
        }
    }
}

/// On SIGINT or SIGTERM: kill the running external commands' process
/// groups, remove scratch directories, say so, and exit with 128 + the
/// signal (130, 143). The cache stays valid: its lock is released with the
/// process, and a half-written entry sits in `tmp/` until the next run.
fn exit_cleanly_on_interrupt() {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) else {
        tracing::warn!("cannot install the interrupt handler: an interrupted exec stage may leave its command running");
        return;
    };
    std::thread::spawn(move || {
        if let Some(signal) = signals.forever().next() {
            crate::core::interrupt::clean_up();
            let name = if signal == SIGINT {
                "SIGINT"
            } else {
                "SIGTERM"
            };
            eprintln!("pipe: interrupted by {name}; nothing of the running stage was cached");
            // _exit: no atexit handlers or C++ destructors while torch's
            // threads may still be running.
            // SAFETY: _exit(2) ends the process; it touches no Rust state.
            unsafe { libc::_exit(128 + signal) }
        }
    });
}

fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if cause.downcast_ref::<PipelineError>().is_some() {
            return 2;
        }
        if cause.downcast_ref::<crate::core::CacheError>().is_some() {
            return 3;
        }
        if cause.downcast_ref::<pipe_score::ScoreJobError>().is_some() {
            return 1;
        }
        if let Some(report) = cause.downcast_ref::<crate::report::ReportError>() {
            return match report {
                crate::report::ReportError::NothingToReport(_) => 3,
                crate::report::ReportError::Run(_) => continue,
            };
        }
        if let Some(run) = cause.downcast_ref::<RunError>() {
            return match run {
                RunError::Stage { .. }
                | RunError::Output { .. }
                | RunError::ExternalFile { .. } => 1,
                RunError::Selection(_) => 2,
                RunError::Cache(_) | RunError::NotCached { .. } => 3,
            };
        }
    }
    2
}

fn init_logging(verbose: u8, quiet: bool) {
    let default = match (quiet, verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}

fn open_cache(dir: &Option<PathBuf>) -> anyhow::Result<Cache> {
    let dir = dir
        .clone()
        .or_else(|| std::env::var_os("PIPE_CACHE_DIR").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(".pipe"));
    Ok(Cache::open(dir)?)
}

fn parse_overrides(set: &[String]) -> anyhow::Result<Vec<Override>> {
    set.iter()
        .map(|s| Override::parse(s).map_err(|m| anyhow::anyhow!("--set {m}")))
        .collect()
}

fn load_pipeline(path: &Path, set: &[String]) -> anyhow::Result<Pipeline> {
    Ok(Pipeline::load(path, &parse_overrides(set)?)?)
}

fn resolve_device(requested: Option<&str>, pipeline: &Pipeline) -> anyhow::Result<String> {
    let spec = requested.unwrap_or(&pipeline.device);
    Ok(runtime::resolve_device(spec)?)
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run {
            pipeline,
            settings,
            only,
            from,
            force,
            json,
            report: report_page,
        } => {
            let path = pipeline;
            let (pipeline, device) = settings.load(&path)?;
            let cache = open_cache(&cli.cache_dir)?;
            let options = RunOptions {
                only,
                from,
                force,
                device: device.clone(),
                lock_timeout: Duration::from_secs(cli.lock_timeout),
            };
            let renderer = render::Renderer::new(json, cli.quiet);
            let report = crate::core::run(&pipeline, &cache, &options, &renderer);
            renderer.finish();
            // The page is written whether the run failed or not (it then
            // says where); the run's error stays the answer.
            let page = report_page.map(|output| {
                let output = (!output.as_os_str().is_empty()).then_some(output);
                write_report(&path, &pipeline, &cache, &device, output, cli.quiet || json)
            });
            let report = report.with_context(|| format!("running {}", pipeline.source))?;
            if json {
                render::print_json_line(
                    &serde_json::json!({ "event": "run_finished", "report": report }),
                );
            } else if !cli.quiet {
                render::print_summary(&report);
            }
            page.transpose()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Report {
            pipelines,
            settings,
            runs,
            output,
        } => {
            let cache = open_cache(&cli.cache_dir)?;
            if let ([path], false) = (pipelines.as_slice(), runs) {
                let (pipeline, device) = settings.load(path)?;
                write_report(path, &pipeline, &cache, &device, output, cli.quiet)?;
            } else {
                let runs = comparison_runs(&pipelines, &settings, runs, &cache)?;
                let page = crate::report::render_comparison(&runs, crate::core::BUILD_ID);
                let output = output.unwrap_or_else(|| PathBuf::from("out/report/compare.html"));
                write_page(&output, &page, cli.quiet)?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status {
            pipeline,
            settings,
            json,
        } => {
            let (pipeline, device) = settings.load(&pipeline)?;
            let cache = open_cache(&cli.cache_dir)?;
            let waiting = render::Renderer::new(false, cli.quiet);
            let states = crate::core::status(
                &pipeline,
                &cache,
                &device,
                Duration::from_secs(cli.lock_timeout),
                &waiting,
            );
            waiting.finish();
            let states = states?;
            if json {
                let rows: Vec<_> = states
                    .iter()
                    .map(|(name, f)| serde_json::json!({ "stage": name, "freshness": f }))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for (name, freshness) in &states {
                    match freshness {
                        Freshness::Fresh => println!("{name:<16} fresh"),
                        Freshness::NeverRun => println!("{name:<16} never run"),
                        Freshness::Stale { reasons } => {
                            println!("{name:<16} stale");
                            for r in reasons {
                                println!("{:<16}   - {r}", "");
                            }
                        }
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Dag { pipeline, format } => {
            let pipeline = load_pipeline(&pipeline, &[])?;
            let format = match format {
                DagArg::Text => DagFormat::Text,
                DagArg::Mermaid => DagFormat::Mermaid,
                DagArg::Dot => DagFormat::Dot,
            };
            print!("{}", pipeline.render_dag(format));
            Ok(ExitCode::SUCCESS)
        }
        Command::Stages { kind, json } => {
            render::print_stages(kind.as_deref(), json)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Compare {
            pipelines,
            device,
            set,
            seeds,
            json,
        } => {
            let overrides = parse_overrides(&set)?;
            let cache = open_cache(&cli.cache_dir)?;
            let device = runtime::resolve_device(device.as_deref().unwrap_or("auto"))?;
            let options = RunOptions {
                device,
                ..RunOptions::default()
            };
            let renderer = render::Renderer::new(false, true);
            let rows =
                compare::compare(&pipelines, &overrides, &seeds, &cache, &options, &renderer);
            renderer.finish();
            let rows = rows?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print!("{}", compare::markdown(&rows));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Score {
            model,
            settings,
            input,
            output,
            text_column,
            id_column,
            keep,
            top_k,
            shard,
            batch_rows,
            follow_links,
            json,
        } => {
            let batch_rows = batch_rows as usize;
            let job = pipe_score::ScoreJob {
                input,
                output,
                text_column,
                id_column,
                keep_columns: keep,
                top_k,
                shard,
                batch_rows,
                follow_links,
            };
            let renderer = render::Renderer::new(json, cli.quiet);
            let model = score::load_model(
                &model,
                &settings,
                &cli.cache_dir,
                Duration::from_secs(cli.lock_timeout),
                &renderer,
            )?;
            score::run(&model, &job, &renderer, json, cli.quiet)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Bundle {
            pipeline,
            dir,
            settings,
        } => {
            let renderer = render::Renderer::new(false, cli.quiet);
            let model = score::load_model(
                &pipeline,
                &settings,
                &cli.cache_dir,
                Duration::from_secs(cli.lock_timeout),
                &renderer,
            )?;
            renderer.finish();
            model
                .save_bundle(&dir)
                .with_context(|| format!("writing the bundle {}", dir.display()))?;
            if !cli.quiet {
                println!("wrote {} ({})", dir.display(), model.description);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Gc { dry_run } => {
            let cache = open_cache(&cli.cache_dir)?;
            let waiting = render::Renderer::new(false, cli.quiet);
            let lock = cache.lock(Duration::from_secs(cli.lock_timeout), &waiting);
            waiting.finish();
            let _lock = lock?;
            let removal = cache.gc(dry_run)?;
            if dry_run {
                for entry in &removal.entries {
                    println!("{entry}");
                }
                println!(
                    "would remove {} cache entries ({:.1} MB)",
                    removal.entries.len(),
                    removal.bytes as f64 / 1e6
                );
            } else {
                println!(
                    "removed {} cache entries ({:.1} MB)",
                    removal.entries.len(),
                    removal.bytes as f64 / 1e6
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes the report page of `pipeline`'s last run (atomically) and says where.
fn write_report(
    path: &Path,
    pipeline: &Pipeline,
    cache: &Cache,
    device: &str,
    output: Option<PathBuf>,
    quiet: bool,
) -> anyhow::Result<PathBuf> {
    // The file as written, to show what `--set` changed; a file that no
    // longer loads without the overrides only loses that part.
    let as_written = Pipeline::load(path, &[]).ok();
    let view = crate::report::collect(pipeline, as_written.as_ref(), cache, device)?;
    let page = crate::report::render(&view, crate::core::BUILD_ID);
    let output = output
        .unwrap_or_else(|| PathBuf::from("out/report").join(format!("{}.html", file_stem(path))));
    write_page(&output, &page, quiet)?;
    Ok(output)
}

fn file_stem(path: &Path) -> String {
    path.file_stem()
        .map_or_else(|| "pipeline".into(), |s| s.to_string_lossy().into_owned())
}

/// The runs a comparison shows: each pipeline's last run, or with
/// `history` every run the cache remembers of it.
fn comparison_runs(
    paths: &[PathBuf],
    settings: &Settings,
    history: bool,
    cache: &Cache,
) -> anyhow::Result<Vec<crate::report::Run>> {
    let mut runs = Vec::new();
    let stems: Vec<String> = paths.iter().map(|p| file_stem(p)).collect();
    for path in paths {
        let (pipeline, device) = settings.load(path)?;
        // Named by file stem, or by path where two stems are the same.
        let stem = file_stem(path);
        let stem = if stems.iter().filter(|s| **s == stem).count() > 1 {
            path.display().to_string()
        } else {
            stem
        };
        // Each run as it was: its results' configs, a failed stage's config.
        let mut views = match crate::report::collect_history(&pipeline, cache) {
            Ok(views) => views,
            // A record from before pipe kept runs: its last run, as now.
            Err(crate::report::ReportError::NothingToReport(_)) => {
                vec![crate::report::collect(&pipeline, None, cache, &device)?]
            }
            Err(e) => return Err(e.into()),
        };
        if history {
            runs.extend(
                views
                    .into_iter()
                    .enumerate()
                    .map(|(i, view)| crate::report::Run {
                        label: format!("{stem} #{}", i + 1),
                        view,
                    }),
            );
        } else if let Some(view) = views.pop() {
            runs.push(crate::report::Run { label: stem, view });
        }
    }
    Ok(runs)
}

/// Writes a page atomically, making its directory, and says where.
fn write_page(output: &Path, page: &str, quiet: bool) -> anyhow::Result<()> {
    if let Some(dir) = output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::core::fsutil::atomic_write(output, page.as_bytes())
        .with_context(|| format!("writing {}", output.display()))?;
    if !quiet {
        eprintln!("report: {}", output.display());
    }
    Ok(())
}
