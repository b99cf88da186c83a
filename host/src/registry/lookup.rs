//! Reading one manifest of a repository kiln is pushing to, by tag, without pulling the image
//! behind it: what a signature push needs to append to the `.sig` manifest already there.
//! Pulling images (through indexes, with their blobs) is `pull.rs`'s job.

use tracing::debug;

use super::address::parse_reference;
use super::cause::{cause, Cause};
use super::error::{Error, Result};
use super::pull::MAX_MANIFEST_BYTES;
use super::retry::with_retries;
use super::{Direction, Registry};
use crate::oci::media_type;

impl Registry {
    /// The bytes of the image manifest `reference` names in a repository kiln pushes to, or
    /// `None` when the registry has no such tag. Read with the push credentials, from the
    /// registry itself (never a mirror).
    pub async fn existing_manifest(&self, reference: &str) -> Result<Option<Vec<u8>>> {
        let parsed = parse_reference(reference)?;
        let name = parsed.whole();
        let target = self.route(&parsed, Direction::Push).await?;
        let (client, creds) = self.connect(&target, Direction::Push).await?;
        let accepted = [media_type::OCI_MANIFEST, media_type::DOCKER_MANIFEST];
        let fetched = with_retries("fetch manifest", || async {
            client
                .pull_manifest_raw(&target, &creds.auth, &accepted)
                .await
                .map(|(body, _digest)| body)
                .map_err(|source| Error::FetchManifest {
                    reference: name.clone(),
                    source,
                })
        })
        .await;
        match fetched {
            Ok(body) if body.len() as u64 > MAX_MANIFEST_BYTES => Err(Error::TooLarge {
                reference: name,
                what: "manifest",
                digest: String::new(),
                size: body.len() as u64,
                limit: MAX_MANIFEST_BYTES,
            }),
            Ok(body) => Ok(Some(body.to_vec())),
            Err(e) if cause(&e) == Some(Cause::NotFound) => {
                debug!(reference = %name, "no manifest under this tag yet");
                Ok(None)
            }
            Err(e) => Err(self.explain_denied(e, &target, Direction::Push, &creds)),
        }
    }
}
