//! The flags `kiln build` takes so that a kaniko pod spec or a `docker build` habit works
//! unchanged: kaniko's flags that mean nothing for kiln (accepted, with one info line saying
//! why), kaniko's `--annotation`, `--image-format`, `--dryrun` and
//! `--push-ignore-immutable-tag-errors`, and `docker build`'s `-t/--tag`, `--push`,
//! `-o/--output`, `--iidfile`, `--metadata-file`, `--progress` and `--no-cache`, with how
//! they map onto kiln's outputs (`Outputs`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};

/// See the module comment; flattened into `CliArgs`.
#[derive(Debug, Clone, Args)]
pub struct CompatArgs {
    // --- kaniko flags with no effect in kiln ---
    /// kaniko: retries of base-image extraction. kiln extracts verified local blobs; a
    /// failed download is retried by --image-download-retry
    #[arg(long, default_value_t = 0)]
    pub image_fs_extract_retry: u32,
    /// kaniko: compress cached layers. kiln's cached layers are the pushed blobs
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = true, default_missing_value = "true", value_name = "BOOL")]
    pub compressed_caching: bool,
    /// kaniko: the experimental RUN change detection. kiln always diffs what RUN changed
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub use_new_run: bool,
    /// kaniko (deprecated): build metadata is always written
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub force_build_metadata: bool,
    /// kaniko: make the final filesystem match the target even when every step hits the
    /// cache. kiln always does
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub materialize: bool,
    /// kaniko: keep the build context across stages. kiln never writes into the context
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL",
        env = "KANIKO_PRESERVE_CONTEXT")]
    pub preserve_context: bool,
    /// kaniko: clean the filesystem before the build. In place, kiln lays each stage over a
    /// cleared root anyway
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL",
        env = "KANIKO_PRE_CLEANUP")]
    pub pre_cleanup: bool,
    /// kaniko: which built-in credential helpers to use (env, google, ecr, acr, gitlab).
    /// kiln reads the Docker config and its helpers, and mints tokens for Google and ECR
    /// registries; the list is checked but does not narrow that
    #[arg(long = "credential-helpers", value_delimiter = ',')]
    pub credential_helpers: Vec<String>,

    // --- kaniko flags that change the image or the push ---
    /// An annotation on the image manifest, K=V (repeatable)
    #[arg(long = "annotation")]
    pub annotations: Vec<String>,
    /// Media types of the image: docker or oci (default: the base image's)
    #[arg(long, value_enum)]
    pub image_format: Option<ImageFormatArg>,
    /// Print the stages and steps the build would run, then stop: no root, no RUN, no push
    #[arg(long, visible_alias = "dry-run", action = clap::ArgAction::Set, num_args = 0..=1,
        require_equals = true, default_value_t = false, default_missing_value = "true",
        value_name = "BOOL")]
    pub dryrun: bool,
    /// A push refused because the tag is immutable counts as done
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub push_ignore_immutable_tag_errors: bool,

    // --- docker build ---
    /// docker: a name for the image (repeatable); pushed with --push or
    /// --output type=registry, written into --tar-path archives
    #[arg(short = 't', long = "tag")]
    pub tags: Vec<String>,
    /// docker: push every --tag
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub push: bool,
    /// docker: type=registry | type=image,push=true | type=oci,dest=PATH[,tar=false] |
    /// type=docker,dest=FILE (repeatable)
    #[arg(short = 'o', long = "output")]
    pub outputs: Vec<String>,
    /// docker: write the image ID (the config digest) to this file
    #[arg(long)]
    pub iidfile: Option<PathBuf>,
    /// docker buildx: write the build result's metadata as JSON to this file
    #[arg(long)]
    pub metadata_file: Option<PathBuf>,
    /// how progress is shown: tty (a live view), plain (a line per step start and end), json
    /// (JSON lines, with JSON logs; rawjson is the same); auto: tty on a terminal unless
    /// NO_COLOR or TERM=dumb, json with --log-format json, else plain
    #[arg(long, value_enum)]
    pub progress: Option<ProgressMode>,
    /// docker: do not read the layer cache (a build with --cache still stores its layers)
    #[arg(long, action = clap::ArgAction::Set, num_args = 0..=1, require_equals = true,
        default_value_t = false, default_missing_value = "true", value_name = "BOOL")]
    pub no_cache: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImageFormatArg {
    Docker,
    Oci,
}

pub use crate::progress::Requested as ProgressMode;

/// One `--output`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// push every name (`type=registry`, `type=image,push=true`)
    Registry,
    /// an OCI layout: a directory (`tar=false`) or a tar archive of one
    Oci { dest: PathBuf, tar: bool },
    /// a docker-archive (`docker load`)
    Docker { dest: PathBuf },
}

impl Output {
    /// Parses docker's `--output` value: CSV `key=value` pairs, or a bare path (a local
    /// export, which kiln does not make).
    pub fn parse(text: &str) -> Result<Output> {
        let mut kind = None;
        let mut dest = None;
        let mut tar = true;
        let mut push = false;
        for part in text.split(',').filter(|p| !p.is_empty()) {
            let Some((k, v)) = part.split_once('=') else {
                bail!("--output {text}: expected type=…,dest=…; kiln writes images (registry, oci, docker), not a directory export");
            };
            match k {
                "type" => kind = Some(v.to_string()),
                "dest" => dest = Some(PathBuf::from(v)),
                "tar" => tar = parse_bool(text, k, v)?,
                "push" => push = parse_bool(text, k, v)?,
                // names come from --tag; the rest only shapes what docker stores locally
                "name" | "oci-mediatypes" | "compression" | "compression-level" | "unpack"
                | "annotation" => {}
                _ if k.starts_with("annotation") => {}
                _ => bail!("--output {text}: unknown key {k:?}"),
            }
        }
        let need_dest = |kind: &str| -> Result<PathBuf> {
            match &dest {
                Some(d) if d.as_os_str() == "-" => {
                    bail!("--output {text}: kiln does not write {kind} output to stdout (dest=-); name a file")
                }
                Some(d) => Ok(d.clone()),
                None => bail!("--output {text}: type={kind} needs dest=PATH"),
            }
        };
        match kind.as_deref() {
            Some("registry") => Ok(Output::Registry),
            Some("image") if push => Ok(Output::Registry),
            Some("image") => {
                bail!("--output {text}: kiln has no local image store; use type=image,push=true, type=oci or type=docker")
            }
            Some("oci") => Ok(Output::Oci {
                dest: need_dest("oci")?,
                tar,
            }),
            Some("docker") => Ok(Output::Docker {
                dest: need_dest("docker")?,
            }),
            Some(other) => {
                bail!("--output {text}: type={other} is not an image output; kiln writes registry, image,push=true, oci and docker")
            }
            None => bail!("--output {text}: missing type="),
        }
    }
}

fn parse_bool(text: &str, key: &str, value: &str) -> Result<bool> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => bail!("--output {text}: {key}={value}: expected true or false"),
    }
}

/// Where the image goes, from kaniko's and docker's flags together.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outputs {
    pub destinations: Vec<String>,
    pub no_push: bool,
    pub tar_path: Option<PathBuf>,
    pub oci_layout_path: Option<PathBuf>,
    /// an OCI layout written as a tar archive (`--output type=oci,dest=FILE`)
    pub oci_archive_path: Option<PathBuf>,
}

impl CompatArgs {
    /// Merges `--tag`, `--push` and `--output` with kaniko's `--destination`, `--no-push`,
    /// `--tar-path` and `--oci-layout-path`. A `--destination` is pushed unless `--no-push`
    /// (kaniko); a `--tag` only names the image unless `--push` or a registry output asks
    /// for a push (docker).
    pub fn outputs(&self, kaniko: Outputs) -> Result<Outputs> {
        let mut out = kaniko;
        let mut push_tags = self.push;
        for text in &self.outputs {
            match Output::parse(text)? {
                Output::Registry => push_tags = true,
                Output::Oci { dest, tar: false } => {
                    set_once(&mut out.oci_layout_path, dest, "an OCI layout directory")?
                }
                Output::Oci { dest, tar: true } => {
                    set_once(&mut out.oci_archive_path, dest, "an OCI archive")?
                }
                Output::Docker { dest } => set_once(&mut out.tar_path, dest, "a docker archive")?,
            }
        }
        if push_tags && out.no_push {
            bail!("--push (or --output type=registry) and --no-push contradict each other");
        }
        if push_tags && self.tags.is_empty() && out.destinations.is_empty() {
            bail!("--push needs a name: pass -t/--tag REF");
        }
        if !self.tags.is_empty() && out.destinations.is_empty() && !push_tags {
            // docker: a tag alone names the image; kiln keeps no local image store
            out.no_push = true;
        }
        for tag in &self.tags {
            if !out.destinations.contains(tag) {
                out.destinations.push(tag.clone());
            }
        }
        let written = out.tar_path.is_some()
            || out.oci_layout_path.is_some()
            || out.oci_archive_path.is_some();
        if out.no_push && !written && !self.dryrun {
            tracing::warn!(
                "the image is built but neither pushed nor written: add --push, --destination, --tar-path, --oci-layout-path or --output"
            );
        }
        Ok(out)
    }

    /// `--annotation` values as pairs.
    pub fn annotations(&self) -> Result<Vec<(String, String)>> {
        self.annotations
            .iter()
            .map(|a| match a.split_once('=') {
                Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
                _ => bail!("--annotation {a}: expected KEY=VALUE"),
            })
            .collect()
    }

    /// Checks what needs no I/O, and says in one info line each why a kaniko flag that
    /// was set changes nothing.
    pub fn check(&self) -> Result<()> {
        for helper in &self.credential_helpers {
            if !matches!(
                helper.as_str(),
                "" | "env" | "google" | "ecr" | "acr" | "gitlab"
            ) {
                bail!("--credential-helpers {helper}: expected env, google, ecr, acr or gitlab");
            }
        }
        self.annotations()?;
        for text in &self.outputs {
            Output::parse(text)?;
        }
        Ok(())
    }

    /// One info line for each kaniko flag given that changes nothing in kiln.
    pub fn log_ignored(&self) {
        let notes: [(bool, &str); 6] = [
            (self.image_fs_extract_retry > 0, "--image-fs-extract-retry: kiln extracts verified local blobs; downloads are retried by --image-download-retry"),
            (!self.compressed_caching, "--compressed-caching=false: kiln's cached layers are the compressed blobs it pushes"),
            (self.use_new_run, "--use-new-run: kiln always records what a RUN changed without a full-filesystem snapshot where it can"),
            (self.force_build_metadata, "--force-build-metadata: kiln always writes build metadata"),
            (self.materialize, "--materialize: kiln always makes the stage root match the cached steps it uses"),
            (self.preserve_context || self.pre_cleanup, "--preserve-context/--pre-cleanup: kiln never writes into the context, and in place it lays each stage over a cleared root"),
        ];
        for (_, note) in notes.iter().filter(|(set, _)| *set) {
            tracing::info!("{note}; accepted, nothing to change");
        }
    }
}

fn set_once(slot: &mut Option<PathBuf>, value: PathBuf, what: &str) -> Result<()> {
    if let Some(old) = slot {
        bail!(
            "{what} is asked for twice: {} and {}",
            old.display(),
            value.display()
        );
    }
    *slot = Some(value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_outputs_parse() {
        assert_eq!(Output::parse("type=registry").unwrap(), Output::Registry);
        assert_eq!(
            Output::parse("type=image,name=x,push=true").unwrap(),
            Output::Registry
        );
        assert_eq!(
            Output::parse("type=oci,dest=out.tar").unwrap(),
            Output::Oci {
                dest: "out.tar".into(),
                tar: true
            }
        );
        assert_eq!(
            Output::parse("type=oci,dest=dir,tar=false").unwrap(),
            Output::Oci {
                dest: "dir".into(),
                tar: false
            }
        );
        assert_eq!(
            Output::parse("type=docker,dest=i.tar").unwrap(),
            Output::Docker {
                dest: "i.tar".into()
            }
        );
        for bad in [
            "out",
            "type=local,dest=x",
            "type=oci",
            "type=docker,dest=-",
            "type=image",
        ] {
            assert!(Output::parse(bad).is_err(), "{bad} must be refused");
        }
    }
}
