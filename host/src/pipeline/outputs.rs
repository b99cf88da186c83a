//! The built image written where the build was asked to put it: a docker archive, an OCI
//! layout (a directory or a tar of one), every `--destination` (pushed), the digest files
//! kaniko writes and docker's `--iidfile` and `--metadata-file`; for a multi-platform build,
//! the index over its images (`write_index`).

use anyhow::{Context as _, Result};

use super::Build;
use crate::attest::Attached;
use crate::image::index::{self, BuiltIndex, PlatformImage};
use crate::image::{attestation, output, BuiltImage};
use crate::registry::{self, Platform, PushImage};

/// Writes `image` to every output of the build; with attestations, the pushed tag and the
/// OCI layout name the index that holds it (`--tar-path` keeps the plain image).
pub(crate) async fn write(
    build: &Build,
    image: &BuiltImage,
    attached: Option<&Attached>,
) -> Result<()> {
    let opts = &build.opts;
    if opts.tar_path.is_some() || opts.oci_layout_path.is_some() || opts.oci_archive_path.is_some()
    {
        // files hold every layer's bytes: those taken by digest only are downloaded now
        super::layer_stream::fetch_layers(build, &image.layers).await?;
    }
    if let Some(path) = &opts.tar_path {
        let tags: Vec<String> = opts
            .destinations
            .iter()
            .map(|d| image_name(d, true))
            .collect();
        output::write_docker_archive(image, &tags, path)
            .with_context(|| format!("writing {}", path.display()))?;
        tracing::info!(path = %path.display(), "wrote docker archive");
    }
    if let Some(dir) = &opts.oci_layout_path {
        let name = opts
            .destinations
            .first()
            .map_or_else(|| "latest".to_string(), |d| tag_of(d));
        output::write_oci_layout(image, &name, dir)
            .with_context(|| format!("writing OCI layout {}", dir.display()))?;
        if let Some(attached) = attached {
            attestation::point_layout_at_index(dir, &name, &attached.all())
                .with_context(|| format!("writing OCI layout {}", dir.display()))?;
        }
        tracing::info!(path = %dir.display(), "wrote OCI layout");
    }
    if let Some(path) = &opts.oci_archive_path {
        write_oci_archive(build, image, attached, path)
            .with_context(|| format!("writing OCI archive {}", path.display()))?;
        tracing::info!(path = %path.display(), "wrote OCI archive");
    }
    if !opts.no_push {
        push(build, image, attached).await?;
    }
    if let Some(path) = &opts.iidfile {
        output::write_digest_file(&image.config_digest.0, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &opts.metadata_file {
        output::write_digest_file(&metadata(image, &opts.destinations), path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    write_digest_files(build, &image.manifest_digest.0)
}

/// `--digest-file`, `--image-name-with-digest-file` and `--image-name-tag-with-digest-file`
/// with `digest` (the manifest's, or the index's).
fn write_digest_files(build: &Build, digest: &str) -> Result<()> {
    let opts = &build.opts;
    if let Some(path) = &opts.digest_file {
        output::write_digest_file(digest, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    for (path, with_tag) in [
        (&opts.image_name_with_digest_file, false),
        (&opts.image_name_tag_with_digest_file, true),
    ] {
        let Some(path) = path else { continue };
        let lines: String = opts
            .destinations
            .iter()
            .map(|d| format!("{}@{digest}\n", image_name(d, with_tag)))
            .collect();
        output::write_digest_file(&lines, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Writes a multi-platform build's images as one index to every output (`--tar-path` and
/// `--oci-archive-path` are refused before the build); with attestations, the index is
/// `attached`'s (each image followed by its attestation manifest) and the attestation
/// manifests go wherever the images go. Returns the index digest.
pub(crate) async fn write_index(
    build: &Build,
    images: &[(Platform, BuiltImage)],
    attached: Option<&Attached>,
) -> Result<String> {
    let opts = &build.opts;
    let entries: Vec<PlatformImage<'_>> = images
        .iter()
        .map(|(p, image)| PlatformImage {
            image,
            os: &p.os,
            architecture: &p.architecture,
            variant: p.variant.as_deref(),
        })
        .collect();
    let built = match attached {
        None => index::assemble(&entries)?,
        Some(attached) => BuiltIndex {
            bytes: attached.index.1.clone(),
            digest: crate::layer::Digest(attached.index.0.clone()),
            media_type: crate::oci::media_type::OCI_INDEX,
        },
    };
    if let Some(dir) = &opts.oci_layout_path {
        let name = opts
            .destinations
            .first()
            .map_or_else(|| "latest".to_string(), |d| tag_of(d));
        index::write_oci_layout(&built, &entries, &name, dir)
            .with_context(|| format!("writing OCI layout {}", dir.display()))?;
        if let Some(attached) = attached {
            attestation::point_layout_at_index(dir, &name, &attached.all())
                .with_context(|| format!("writing OCI layout {}", dir.display()))?;
        }
        tracing::info!(path = %dir.display(), "wrote OCI layout (an index of {} images)", images.len());
    }
    if !opts.no_push {
        push_index(build, &built, images, attached).await?;
    }
    // docker writes the index digest as the image id of a multi-platform build
    if let Some(path) = &opts.iidfile {
        output::write_digest_file(&built.digest.0, path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &opts.metadata_file {
        output::write_digest_file(&index_metadata(&built, &opts.destinations), path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    write_digest_files(build, &built.digest.0)?;
    Ok(built.digest.0.clone())
}

/// Pushes each platform's image by digest, and its attestation manifest when there is one,
/// then the index under every destination.
async fn push_index(
    build: &Build,
    index: &BuiltIndex,
    images: &[(Platform, BuiltImage)],
    attached: Option<&Attached>,
) -> Result<()> {
    for dest in &build.opts.destinations {
        let repo = image_name(dest, false);
        for (platform, image) in images {
            let by_digest = format!("{repo}@{}", image.manifest_digest);
            build
                .registry
                .push(&by_digest, &push_image(build, image))
                .await
                .with_context(|| format!("pushing the {platform} image to {by_digest}"))?;
        }
        if let Some(attached) = attached {
            push_attestations(build, &repo, attached)
                .await
                .with_context(|| format!("pushing the attestation manifests to {repo}"))?;
        }
    }
    let push = PushImage {
        manifest: index.bytes.clone(),
        manifest_media_type: index.media_type.to_string(),
        blobs: Vec::new(),
    };
    push_to_destinations(build, &push, None).await
}

/// The keys `docker buildx build --metadata-file` writes for an index.
fn index_metadata(index: &BuiltIndex, destinations: &[String]) -> String {
    let value = serde_json::json!({
        "containerimage.digest": index.digest.0,
        "containerimage.descriptor": {
            "mediaType": index.media_type,
            "digest": index.digest.0,
            "size": index.bytes.len(),
        },
        "image.name": destinations.join(","),
    });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

/// What pushing `image` sends: its config and layers from the blob store, its manifest.
fn push_image(build: &Build, image: &BuiltImage) -> PushImage {
    let mut blobs = vec![registry::BlobFile {
        digest: image.config_digest.0.clone(),
        size: image.config.len() as u64,
        path: build.store.path(&image.config_digest),
    }];
    blobs.extend(image.layers.iter().map(|l| registry::BlobFile {
        digest: l.digest.0.clone(),
        size: l.size,
        path: l.path.clone(),
    }));
    PushImage {
        manifest: image.manifest.clone(),
        manifest_media_type: image.family.manifest().to_string(),
        blobs,
    }
}

/// Pushes the image to every destination; with attestations, the image manifest and the
/// attestation manifest by digest, then the index under the tag.
async fn push(build: &Build, image: &BuiltImage, attached: Option<&Attached>) -> Result<()> {
    push_to_destinations(build, &push_image(build, image), attached).await
}

/// Pushes `push` (an image or an index) under every destination.
async fn push_to_destinations(
    build: &Build,
    push: &PushImage,
    attached: Option<&Attached>,
) -> Result<()> {
    for dest in &build.opts.destinations {
        let pushed = match attached {
            None => build.registry.push(dest, push).await,
            Some(attached) => push_attested(build, dest, push, attached).await,
        };
        match pushed {
            Ok(digest) => {
                tracing::info!(destination = %dest, %digest, "pushed");
                if let Some(key) = &build.opts.sign_key {
                    // the kiln dir, not the build's scratch dir: that one is being removed
                    // while the push runs
                    let scratch = &build.opts.kiln_dir;
                    crate::signing::sign_pushed(&build.registry, key, dest, &digest, scratch)
                        .await
                        .with_context(|| format!("signing {dest}@{digest}"))?;
                }
            }
            Err(e)
                if build.opts.push_ignore_immutable_tag_errors
                    && is_immutable_tag_error(&crate::error::chain(&e)) =>
            {
                tracing::info!(destination = %dest, "the tag is immutable; push refused and ignored (--push-ignore-immutable-tag-errors)")
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("pushing {dest}"))),
        }
    }
    Ok(())
}

/// The image and its attestation manifest by digest, then the index under `dest`'s tag.
async fn push_attested(
    build: &Build,
    dest: &str,
    image: &PushImage,
    attached: &Attached,
) -> std::result::Result<String, registry::Error> {
    let repo = image_name(dest, false);
    let image_digest = crate::oci::digest::of_bytes(&image.manifest);
    build
        .registry
        .push(&format!("{repo}@{image_digest}"), image)
        .await?;
    push_attestations(build, &repo, attached).await?;
    let index = PushImage {
        manifest: attached.index.1.clone(),
        manifest_media_type: crate::oci::media_type::OCI_INDEX.to_string(),
        blobs: Vec::new(),
    };
    build.registry.push(dest, &index).await
}

/// Every attestation manifest of `attached`, with its config and statements, by digest into
/// `repo` (the images they name are pushed before them).
async fn push_attestations(
    build: &Build,
    repo: &str,
    attached: &Attached,
) -> std::result::Result<(), registry::Error> {
    for a in &attached.attestations {
        let blobs = a
            .blobs
            .iter()
            .map(|(digest, bytes)| registry::BlobFile {
                digest: digest.clone(),
                size: bytes.len() as u64,
                path: build.store.path(&crate::layer::Digest(digest.clone())),
            })
            .collect();
        let attestation = PushImage {
            manifest: a.manifest.1.clone(),
            manifest_media_type: crate::oci::media_type::OCI_MANIFEST.to_string(),
            blobs,
        };
        build
            .registry
            .push(&format!("{repo}@{}", a.manifest.0), &attestation)
            .await?;
    }
    Ok(())
}

/// The refusals registries give for a tag that cannot be moved (Artifact Registry, ECR).
const IMMUTABLE_TAG_ERRORS: &[&str] = &[
    "The repository has enabled tag immutability",
    "cannot be overwritten because the tag is immutable",
];

fn is_immutable_tag_error(text: &str) -> bool {
    IMMUTABLE_TAG_ERRORS.iter().any(|e| text.contains(e))
}

/// The keys `docker buildx build --metadata-file` writes for an image.
fn metadata(image: &BuiltImage, destinations: &[String]) -> String {
    let value = serde_json::json!({
        "containerimage.digest": image.manifest_digest.0,
        "containerimage.config.digest": image.config_digest.0,
        "containerimage.descriptor": {
            "mediaType": image.family.manifest(),
            "digest": image.manifest_digest.0,
            "size": image.manifest.len(),
        },
        "image.name": destinations.join(","),
    });
    serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
}

/// An OCI layout as one tar archive, as `--output type=oci,dest=FILE` gives it.
fn write_oci_archive(
    build: &Build,
    image: &BuiltImage,
    attached: Option<&Attached>,
    path: &std::path::Path,
) -> Result<()> {
    let dir = tempfile::tempdir_in(&build.opts.kiln_dir)?;
    let name = build
        .opts
        .destinations
        .first()
        .map_or_else(|| "latest".to_string(), |d| tag_of(d));
    output::write_oci_layout(image, &name, dir.path())?;
    if let Some(attached) = attached {
        attestation::point_layout_at_index(dir.path(), &name, &attached.all())?;
    }
    let partial = path.with_extension("partial");
    let mut archive = tar::Builder::new(std::fs::File::create(&partial)?);
    archive.follow_symlinks(false);
    archive.mode(tar::HeaderMode::Deterministic);
    archive.append_dir_all(".", dir.path())?;
    archive.into_inner()?.sync_all()?;
    std::fs::rename(&partial, path)?;
    Ok(())
}

/// A destination without its digest, and without its tag unless `with_tag` (then with
/// `:latest` when it names none).
fn image_name(reference: &str, with_tag: bool) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    let (repo, has_tag) = match name.rsplit_once('/') {
        Some((host, last)) => match last.split_once(':') {
            Some((repo_last, _)) => (format!("{host}/{repo_last}"), true),
            None => (name.to_string(), false),
        },
        None => match name.split_once(':') {
            Some((repo, _)) => (repo.to_string(), true),
            None => (name.to_string(), false),
        },
    };
    if with_tag {
        if has_tag {
            name.to_string()
        } else {
            format!("{name}:{}", tag_of(reference))
        }
    } else {
        repo
    }
}

/// The tag part of a reference (`latest` when it has none or is pinned by digest).
fn tag_of(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    let last = name.rsplit('/').next().unwrap_or(name);
    match last.split_once(':') {
        Some((_, tag)) if !tag.is_empty() => tag.to_string(),
        _ => "latest".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_names() {
        for (r, bare, tagged) in [
            (
                "127.0.0.1:5000/app:1",
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app:1",
            ),
            (
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app",
                "127.0.0.1:5000/app:latest",
            ),
            ("app:v2", "app", "app:v2"),
            ("reg.io/a/b@sha256:abc", "reg.io/a/b", "reg.io/a/b:latest"),
        ] {
            assert_eq!(image_name(r, false), bare, "{r}");
            assert_eq!(image_name(r, true), tagged, "{r}");
        }
    }

    #[test]
    fn tag_of_references() {
        for (r, want) in [
            ("127.0.0.1:5000/app:1", "1"),
            ("127.0.0.1:5000/app", "latest"),
            ("app@sha256:abc", "latest"),
            ("reg.io/a/b:v2", "v2"),
        ] {
            assert_eq!(tag_of(r), want, "{r}");
        }
    }
}
