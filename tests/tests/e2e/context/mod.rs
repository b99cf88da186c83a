//! Build contexts: where they come from (`sources`: tarballs, HTTP, GCS, S3, git), what
//! `.dockerignore` leaves out (`ignore`), and symlinks that point out of them (`symlink`).

mod ignore;
mod sources;
mod symlink;
