//! A stage's snapshots: the index kept between steps, which paths each step looks at (the
//! whole root after RUN, the guest's touched paths after COPY/ADD/WORKDIR), and the layer
//! each change becomes. The step code calls `after_step` after each step and once more
//! with `Touched::StageEnd` at the stage's end;
//! what changed is `snapshot`'s business, how it is written is `layer`'s.

use std::path::Path;
use std::time::Instant;

use anyhow::Result;

use super::LayerOptions;
use crate::layer::{self, BlobStore, Compression, LayerBlob, LayerFormat, OCI_LAYER_ZSTD};
use crate::rootfs::{Kind, Root};
use crate::snapshot::{Changes, Ignore, Index, Touch};

/// What a step reports about the paths it changed.
pub(crate) enum Touched {
    /// RUN without an overlay: anything may have changed, the root is walked; the
    /// directories kiln made mountpoints in (a ctime that moved alone there is not a change)
    Walk(Vec<String>),
    /// RUN on an overlay: exactly what its upper directory held
    Upper(Vec<Touch>),
    /// COPY/ADD/WORKDIR: the guest's list (and what is below new directories)
    Paths(Vec<String>),
    /// after the last instruction (`--single-snapshot` takes its layer here)
    StageEnd,
}

/// The snapshot state of one stage root.
pub(crate) struct Snapshots {
    opts: LayerOptions,
    ignore: Ignore,
    index: Index,
    /// `--single-snapshot`: a step ran since the last layer
    dirty: bool,
}

impl Snapshots {
    /// Indexes the stage root as its base left it.
    pub fn start(root: &Root, opts: &LayerOptions) -> Result<Snapshots> {
        let mut ignore: Vec<String> = opts.ignore_paths.clone();
        // kaniko leaves /var/run out; a base's `/var/run -> /run` link (Debian) is ordinary
        // content, so only a directory or a path the base does not have is left out
        if opts.ignore_var_run
            && root
                .lstat("var/run")
                .map_or(true, |st| st.kind == Kind::Dir)
        {
            ignore.push("/var/run".to_string());
        }
        let ignore = Ignore::new(ignore);
        let t = Instant::now();
        let index = Index::scan(root.path(), &ignore, None)?;
        tracing::debug!(
            entries = index.entries.len(),
            took = %crate::progress::human(t.elapsed()),
            "indexed the base"
        );
        Ok(Snapshots {
            opts: opts.clone(),
            ignore,
            index,
            dirty: false,
        })
    }

    /// After a step that may have changed the root: its layer, if it changed anything.
    /// Snapshots of another root (a scratch root holding part of the stage, `sparse`), with
    /// these options and ignored paths, its baseline what it holds now.
    pub fn beside(&self, root: &Root) -> Result<Snapshots> {
        let index = Index::scan(root.path(), &self.ignore, None)?;
        Ok(Snapshots {
            opts: self.opts.clone(),
            ignore: self.ignore.clone(),
            index,
            dirty: false,
        })
    }

    pub fn after_step(
        &mut self,
        root: &Root,
        step: &Touched,
        store: &BlobStore,
        format: &LayerFormat,
    ) -> Result<Option<LayerBlob>> {
        if let Touched::StageEnd = step {
            return self.finish(root, store, format);
        }
        if self.opts.single_snapshot {
            self.dirty = true;
            return Ok(None);
        }
        let t = Instant::now();
        let known = match step {
            Touched::Paths(paths) => self
                .index
                .apply_touched(root.path(), paths, &self.ignore, self.opts.snapshot_mode)?
                .map(|c| ("touched paths", c)),
            Touched::Upper(touched) => Some((
                "overlay",
                self.index.apply_upper(
                    root.path(),
                    touched,
                    &self.ignore,
                    self.opts.snapshot_mode,
                )?,
            )),
            Touched::Walk(_) | Touched::StageEnd => None,
        };
        let settled: &[String] = match step {
            Touched::Walk(settled) => settled,
            _ => &[],
        };
        let (how, changes) = match known {
            Some(known) => known,
            None => ("walk", self.rescan_settled(root.path(), settled)?),
        };
        self.write(root, how, t, &changes, store, format)
    }

    /// `--single-snapshot`: the stage's one layer, taken after its last instruction.
    fn finish(
        &mut self,
        root: &Root,
        store: &BlobStore,
        format: &LayerFormat,
    ) -> Result<Option<LayerBlob>> {
        if !self.dirty {
            return Ok(None);
        }
        self.dirty = false;
        let t = Instant::now();
        let changes = self.rescan(root.path())?;
        self.write(root, "single snapshot", t, &changes, store, format)
    }

    /// Takes the root as it is now as the new baseline, with no layer: after a cached layer
    /// was applied, what it brought is already in the image.
    pub fn resync(&mut self, root: &Root) -> Result<()> {
        self.rescan(root.path()).map(|_| ())
    }

    fn rescan(&mut self, root: &Path) -> Result<Changes> {
        self.rescan_settled(root, &[])
    }

    /// A walk where the directories in `settled` count as unchanged when only their ctime
    /// moved (kiln's mountpoints came and went there; the overlay never sees that either).
    fn rescan_settled(&mut self, root: &Path, settled: &[String]) -> Result<Changes> {
        let after = Index::scan(root, &self.ignore, Some(&self.index))?;
        let changes = self
            .index
            .diff_settled(&after, self.opts.snapshot_mode, settled);
        self.index = after;
        Ok(changes)
    }

    fn write(
        &self,
        root: &Root,
        how: &str,
        started: Instant,
        changes: &Changes,
        store: &BlobStore,
        format: &LayerFormat,
    ) -> Result<Option<LayerBlob>> {
        let found = started.elapsed();
        tracing::info!(
            changed = changes.items.len(),
            entries = self.index.entries.len(),
            took = %crate::progress::human(found),
            "snapshot ({how})"
        );
        if changes.is_empty() {
            return Ok(None);
        }
        let t = Instant::now();
        let blob = layer::write_layer(root, changes, store, format)?;
        tracing::debug!(
            digest = %blob.digest,
            size = blob.size,
            took = %crate::progress::human(t.elapsed()),
            "layer"
        );
        Ok(Some(blob))
    }
}

/// The format of this build's new layers in a manifest family's gzip media type.
pub(crate) fn layer_format(
    opts: &LayerOptions,
    gzip_media_type: &str,
    mtime_clamp: Option<i64>,
) -> LayerFormat {
    LayerFormat {
        media_type: match opts.codec.compression {
            Compression::Gzip => gzip_media_type.to_string(),
            Compression::Zstd => OCI_LAYER_ZSTD.to_string(),
        },
        codec: opts.codec,
        mtime_clamp,
        shown_as: None,
    }
}
