//! Layers: the snapshot and compression flags (`flags`), the layer cache (`cache`, and
//! `cache_lazy`: rebuilds that need no root, `cache_keys`: keys read without a root), a hostile base layer that must stay inside the
//! stage root (`escape`), names that are not UTF-8 (`names`), and a layer that replaces a
//! directory with a symlink between entries (`replaced`).

mod cache;
mod cache_keys;
mod cache_lazy;
mod escape;
mod flags;
mod names;
mod replaced;
