//! Thin pyo3 layer over `sluice-callback`: one module, one error-mapping function.
use pyo3::prelude::*;

/// The `sluice_native` Python module.
#[pymodule]
fn sluice_native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
