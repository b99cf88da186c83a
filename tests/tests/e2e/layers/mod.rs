//! Layers: the snapshot and compression flags (`flags`), the layer cache (`cache`), a
//! hostile base layer that must stay inside the stage root (`escape`), and names that are not
//! UTF-8 (`names`), and a layer that replaces a directory with a symlink between entries
//! (`replaced`).

mod cache;
mod escape;
mod flags;
mod names;
mod replaced;
