//! The Dockerfile's instructions as written: parse and semantic errors (`errors`), ONBUILD
//! and automatic ARGs (`semantics`), heredocs (`heredoc`), COPY/ADD flags (`copy_flags`),
//! ADD's URL, git and archive sources (`add_sources`) and COPY through a Debian symlink
//! (`debian_var_run`).

mod add_sources;
mod copy_flags;
mod debian_var_run;
mod errors;
mod heredoc;
mod semantics;
