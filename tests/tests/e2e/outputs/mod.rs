//! Where a build's image goes and what it looks like there: pushed to a registry
//! (`build_push`), written locally with `--no-push` (`local`), the same digest every
//! time with `--reproducible` (`reproducible`), and `docker build`'s and kaniko's output
//! flags (`docker_style`).

mod build_push;
mod docker_style;
mod local;
mod reproducible;
