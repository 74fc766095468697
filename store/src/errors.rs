//! The store's error type.

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open the store at {url}")]
    Open {
        /// The database URL.
        url: String,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A migration failed.
    #[error("cannot apply store migration {version}")]
    Migrate {
        /// The migration's version.
        version: i64,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A query failed.
    #[error("store query failed: {what}")]
    Query {
        /// What was being done.
        what: &'static str,
        /// Why.
        #[source]
        source: sqlx::Error,
    },
    /// A stored JSON document could not be read or written.
    #[error("bad JSON in the store: {what}")]
    Json {
        /// Which document.
        what: &'static str,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
}

/// Shorthand for mapping sqlx errors with context.
pub(crate) fn q(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
    move |source| StoreError::Query { what, source }
}

/// Shorthand for mapping serde_json errors with context.
pub(crate) fn j(what: &'static str) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |source| StoreError::Json { what, source }
}
