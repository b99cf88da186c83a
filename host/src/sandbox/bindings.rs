//! The generated bindings of `wit/kiln.wit` (world `builder`); nothing outside `sandbox`
//! sees these types.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "builder",
});
