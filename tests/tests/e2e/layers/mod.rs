//! Layers: the snapshot and compression flags (`flags`), the layer cache (`cache`), and a
//! hostile base layer that must stay inside the stage root (`escape`).

mod cache;
mod escape;
mod flags;
