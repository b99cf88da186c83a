//! What one build was asked to do, validated and derived from the command line
//! (`cli::BuildArgs::into_options` makes it): the context, outputs, registries, RUN's
//! isolation, snapshot and layer settings and the cache flags.

use std::path::PathBuf;

use crate::registry::{Platform, RegistryOptions};

/// Validated options of one build.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// the context and Dockerfile as given; fetched and resolved when the build starts
    pub context: crate::context::Request,
    pub destinations: Vec<String>,
    pub no_push: bool,
    pub tar_path: Option<PathBuf>,
    pub oci_layout_path: Option<PathBuf>,
    /// an OCI layout written as one tar archive (docker's `--output type=oci,dest=FILE`)
    pub oci_archive_path: Option<PathBuf>,
    pub digest_file: Option<PathBuf>,
    /// docker's `--iidfile`: the image ID (config digest)
    pub iidfile: Option<PathBuf>,
    /// docker buildx's `--metadata-file`
    pub metadata_file: Option<PathBuf>,
    pub build_args: Vec<(String, String)>,
    pub target: Option<String>,
    pub registry: RegistryOptions,
    /// `--reproducible`: timestamps fixed (SOURCE_DATE_EPOCH, else 0), layer mtimes clamped
    pub reproducible: bool,
    /// `--sbom`, `--provenance`: attestations attached as BuildKit does
    pub attest: crate::attest::AttestOptions,
    /// `--label k=v`: labels added to the final image
    pub labels: Vec<(String, String)>,
    /// `--annotation`s and `--image-format`
    pub manifest: crate::image::ManifestOptions,
    /// `--dryrun`: print the plan, build nothing
    pub dry_run: bool,
    /// `--check`: lint the Dockerfile, build nothing
    pub check: bool,
    /// `--push-ignore-immutable-tag-errors`
    pub push_ignore_immutable_tag_errors: bool,
    /// kaniko's `--image-name-with-digest-file`: `name@digest` per destination
    pub image_name_with_digest_file: Option<PathBuf>,
    /// kaniko's `--image-name-tag-with-digest-file`: `name:tag@digest` per destination
    pub image_name_tag_with_digest_file: Option<PathBuf>,
    /// kiln's work dir: blob cache, stage roots, compiled guest
    pub kiln_dir: PathBuf,
    /// RUN isolation, chosen (and logged) by `run::isolation::choose` before the build
    pub isolation: crate::run::Isolation,
    /// `--secret`s for `RUN --mount=type=secret`
    pub secrets: crate::run::Secrets,
    /// in-place isolation: paths never snapshotted nor overwritten
    pub ignore_paths: Vec<PathBuf>,
    /// in-place isolation: leave /var/run alone
    pub ignore_var_run: bool,
    /// `--cleanup` as given: `true` in place also removes what the build wrote to `/`;
    /// `false` leaves the build's scratch directory (stage roots) in the kiln dir
    pub cleanup: Option<bool>,
    /// `--sequential-stages`: one stage at a time, in order (in-place isolation always is)
    pub sequential_stages: bool,
    /// `--run-overlay`: RUN on an overlay where possible (see `run::overlay`)
    pub run_overlay: bool,
    /// snapshots and layers: `--snapshot-mode`, `--single-snapshot`, `--ignore-path`,
    /// `--ignore-var-run`, `--compression`, `--compression-level`
    pub layers: LayerOptions,
    /// `--skip-push-permission-check`
    pub skip_push_permission_check: bool,
    /// `--custom-platform`: the (first) platform to build for, else the host's
    pub platform: Option<Platform>,
    /// every platform of `--custom-platform`; two or more make an image index
    pub platforms: Vec<Platform>,
    /// the layer cache flags
    pub cache: crate::cache::CacheOptions,
    /// `--sign-key`: read before the build; every pushed digest is signed with it
    pub sign_key: Option<std::sync::Arc<crate::signing::Key>>,
}

/// How stage roots are snapshotted and new layers compressed.
#[derive(Debug, Clone, Default)]
pub struct LayerOptions {
    pub snapshot_mode: crate::snapshot::SnapshotMode,
    /// one layer per stage, taken after its last instruction
    pub single_snapshot: bool,
    /// root paths never snapshotted (absolute, as the user wrote them)
    pub ignore_paths: Vec<String>,
    /// leave `/var/run` out of every layer, as kaniko does (unless the base has it as a link)
    pub ignore_var_run: bool,
    pub codec: crate::layer::Codec,
}
