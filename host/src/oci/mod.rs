//! The image-format vocabulary that the registry, image and cache modules share: the media
//! types of manifests, indexes and configs (`media_type`) and sha256 digests as OCI spells
//! them (`digest`).
//!
//! Only names and hashing live here. Layer media types belong to `layer`, which writes layers;
//! the `Digest`/`DiffId` newtypes of built layers are `layer`'s too; reading and writing
//! manifests is `registry`'s and `image`'s.

pub mod digest;
pub mod media_type;
