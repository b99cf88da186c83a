//! `--sbom` and `--provenance` in the build: what the provenance needs from the plan (taken
//! before the stages consume it), then, once the image (or each platform's image) is
//! assembled, the statements made (`attest`) and the index the outputs push and write.
//! Nothing is made without either flag.

use anyhow::{Context as _, Result};
use serde_json::json;

use super::{Build, Loaded};
use crate::attest::{self, provenance, sbom, Attached, Statement, Subject};
use crate::context::Origin;
use crate::image::BuiltImage;
use crate::registry::Platform;
use crate::task::blocking;

/// What the provenance takes from the build before the stages run.
pub(super) struct Request {
    dockerfile: (String, String),
    /// what the context was fetched from
    context: crate::context::Origin,
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
        context: loaded.fetched.origin.clone(),
        steps,
        started: now(),
    }
}

/// The context in the provenance: a fetched one as a material (a git commit by its sha1,
/// an archive by the sha256 of its bytes, with its object version), a local one by name.
fn context_inputs(origin: &Origin) -> (Vec<String>, Option<provenance::Material>) {
    match origin {
        Origin::Local => (vec!["context".into(), "dockerfile".into()], None),
        Origin::Git { url, commit } => (
            Vec::new(),
            Some(provenance::Material::fetched(
                url,
                &format!("sha1:{commit}"),
            )),
        ),
        Origin::Archive {
            url,
            digest,
            version,
        } => (
            Vec::new(),
            Some(provenance::Material {
                annotations: version
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.clone()))
                    .collect(),
                ..provenance::Material::fetched(url, digest)
            }),
        ),
    }
}

/// The images the build pulled and the files ADD fetched, drained from the build (each
/// platform of a multi-platform build takes its own), with whether each is pinned to a
/// platform by the Dockerfile.
pub(super) fn take_pulled(build: &Build) -> Vec<(provenance::Material, bool)> {
    build
        .pulled
        .lock()
        .map(|mut m| std::mem::take(&mut *m))
        .unwrap_or_default()
}

/// The statements the flags ask for about `image`, attached as an index (none asked: None).
pub(super) async fn make(
    build: &Build,
    image: &BuiltImage,
    request: &Request,
) -> Result<Option<Attached>> {
    if !build.opts.attest.any() {
        return Ok(None);
    }
    let materials = take_pulled(build).into_iter().map(|(m, _)| m).collect();
    let statements = statements(build, image, request, &build.platform, materials).await?;
    let attached = attest::attach(image, &statements)?;
    store(build, &attached)?;
    Ok(Some(attached))
}

/// The statements the flags ask for about each platform's image, all in one index, each
/// image followed by its own attestation manifest (none asked: None). `materials[i]` is
/// what the provenance of `images[i]` names: the images pulled and files fetched for that
/// platform, the shared stages' included.
pub(super) async fn make_all(
    build: &Build,
    images: &[(Platform, BuiltImage)],
    materials: Vec<Vec<provenance::Material>>,
    request: &Request,
) -> Result<Option<Attached>> {
    if !build.opts.attest.any() {
        return Ok(None);
    }
    let mut subjects = Vec::new();
    for ((platform, image), materials) in images.iter().zip(materials) {
        let statements = statements(build, image, request, platform, materials).await?;
        subjects.push(Subject {
            platform: platform_object(platform),
            image,
            statements,
        });
    }
    let attached = attest::attach_all(&subjects)?;
    store(build, &attached)?;
    Ok(Some(attached))
}

/// `platform` as an index entry names it (as `image::index` does).
fn platform_object(platform: &Platform) -> serde_json::Value {
    let mut p = json!({"architecture": platform.architecture, "os": platform.os});
    if let Some(variant) = &platform.variant {
        p["variant"] = json!(variant);
    }
    p
}

/// The attestation blobs and manifests put in the blob store, where the push reads them.
fn store(build: &Build, attached: &Attached) -> Result<()> {
    for (_, bytes) in attached.all() {
        build.store.put_bytes(&bytes)?;
    }
    Ok(())
}

/// The statements about `image`, built for `platform` from `materials`.
async fn statements(
    build: &Build,
    image: &BuiltImage,
    request: &Request,
    platform: &Platform,
    mut materials: Vec<provenance::Material>,
) -> Result<Vec<Statement>> {
    let asked = &build.opts.attest;
    let subject = image.manifest_digest.0.clone();
    let mut statements = Vec::new();
    if asked.sbom {
        // the SBOM reads every layer's bytes: those a lazy build took by digest come now
        super::layer_stream::fetch_layers(build, &image.layers).await?;
        let layers = image.layers.clone();
        let packages = blocking(move || sbom::packages(&layers))
            .await?
            .with_context(|| format!("reading the {platform} image's packages for the SBOM"))?;
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
        let (locals, context) = context_inputs(&request.context);
        materials.extend(context);
        let inputs = provenance::Inputs {
            mode,
            dockerfile: request.dockerfile.clone(),
            context: crate::redaction::redact(&build.opts.context.spec).into_owned(),
            locals,
            build_args: build.opts.build_args.clone(),
            secret_ids: build.opts.secrets.ids(),
            target: build.opts.target.clone(),
            platform: platform.to_string(),
            materials,
            steps: request.steps.clone(),
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
    Ok(statements)
}
