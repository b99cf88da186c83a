//! Where a build's image goes and what it looks like there: pushed to a registry
//! (`build_push`), written locally with `--no-push` (`local`), and the same digest every
//! time with `--reproducible` (`reproducible`).

mod build_push;
mod local;
mod reproducible;
