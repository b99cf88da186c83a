//! Reading one manifest of a repository kiln is pushing to, by tag, without pulling the image
//! behind it: what a signature push needs to append to the `.sig` manifest already there.
//! Pulling images (through indexes, with their blobs) is `pull.rs`'s job.

use tracing::debug;

use super::address::parse_reference;
use super::cause::{cause, Cause};
use super::error::Result;
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
        let (_, creds) = self.connect(&target, Direction::Push).await?;
        let accepted = [media_type::OCI_MANIFEST, media_type::DOCKER_MANIFEST];
        // kiln's own capped GET (fetch.rs): at most 4 MiB, checked against the digest header
        let fetched = with_retries("fetch manifest", || {
            self.get_manifest(&target, &creds, &accepted)
        })
        .await;
        match fetched {
            Ok(body) => Ok(Some(body.to_vec())),
            Err(e) if cause(&e) == Some(Cause::NotFound) => {
                debug!(reference = %name, "no manifest under this tag yet");
                Ok(None)
            }
            Err(e) => Err(self.explain_denied(e, &target, Direction::Push, &creds)),
        }
    }
}
