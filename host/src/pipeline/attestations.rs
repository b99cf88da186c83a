//! `--sbom` and `--provenance` in the build: what the provenance needs from the plan (taken
//! before the stages consume it), then, once the image is assembled, the statements made
//! (`attest`) and the index the outputs push and write. Nothing is made without either flag.

use anyhow::{Context as _, Result};

use super::{Build, Loaded};
use crate::attest::{self, provenance, sbom, Attached};
use crate::image::BuiltImage;
use crate::task::blocking;

/// What the provenance takes from the build before the stages run.
pub(super) struct Request {
    dockerfile: (String, String),
    steps: Vec<provenance::Step>,
    /// seconds since the epoch when the build started
    started: i64,
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The Dockerfile's name and digest, the built stages' steps and the start time.
pub(super) fn request(loaded: &Loaded) -> Request {
    let plan = &loaded.plan;
    let steps = plan
        .order
        .iter()
        .flat_map(|&i| {
            let stage = &plan.stages[i];
            let name = stage.display_name();
            stage.instructions.iter().map(move |ins| provenance::Step {
                stage: name.clone(),
                line: ins.line,
                instruction: crate::redaction::redact(&ins.original).into_owned(),
            })
        })
        .collect();
    Request {
        dockerfile: (
            loaded.source.name.clone(),
            crate::oci::digest::of_bytes(loaded.source.text.as_bytes()),
        ),
        steps,
        started: now(),
    }
}

/// The statements the flags ask for about `image`, attached as an index (none asked: None).
pub(super) async fn make(
    build: &Build,
    image: &BuiltImage,
    request: Request,
) -> Result<Option<Attached>> {
    let asked = &build.opts.attest;
    if !asked.any() {
        return Ok(None);
    }
    let subject = image.manifest_digest.0.clone();
    let mut statements = Vec::new();
    if asked.sbom {
        // the SBOM reads every layer's bytes: those a lazy build took by digest come now
        super::layer_stream::fetch_layers(build, &image.layers).await?;
        let layers = image.layers.clone();
        let packages = blocking(move || sbom::packages(&layers))
            .await?
            .context("reading the image's packages for the SBOM")?;
        let name = build
            .opts
            .destinations
            .first()
            .cloned()
            .unwrap_or_else(|| "image".to_string());
        let seed = format!("{name}\n{subject}");
        let doc = sbom::document(&packages, &name, &build.created, &seed);
        statements.push(attest::statement(attest::SPDX_DOCUMENT, &subject, doc)?);
    }
    if let Some(mode) = asked.provenance {
        let (started, finished) = if build.opts.reproducible {
            (build.created.clone(), build.created.clone())
        } else {
            (
                crate::image::rfc3339(request.started),
                crate::image::rfc3339(now()),
            )
        };
        let materials = build.pulled.lock().map(|m| m.clone()).unwrap_or_default();
        let inputs = provenance::Inputs {
            mode,
            dockerfile: request.dockerfile,
            context: crate::redaction::redact(&build.opts.context.spec).into_owned(),
            build_args: build.opts.build_args.clone(),
            secret_ids: build.opts.secrets.ids(),
            target: build.opts.target.clone(),
            platform: build.platform.to_string(),
            materials,
            steps: request.steps,
            started,
            finished,
            reproducible: build.opts.reproducible,
        };
        statements.push(attest::statement(
            attest::SLSA_PROVENANCE_V1,
            &subject,
            provenance::predicate(&inputs),
        )?);
    }
    let attached = attest::attach(image, &statements)?;
    for (_, bytes) in attached.all() {
        build.store.put_bytes(&bytes)?;
    }
    Ok(Some(attached))
}
