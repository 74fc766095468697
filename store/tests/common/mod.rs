//! The two backends every store test runs on: a real SQLite file, and a real PostgreSQL server
//! (`sluice_tests::Postgres`) started in a temp dir.

use sluice_store::Store;

/// One case's database, which the case may open as often as it likes.
pub enum Db {
    Sqlite(tempfile::TempDir),
    Postgres(String),
}

impl Db {
    pub async fn open(&self) -> Store {
        let opened = match self {
            Db::Sqlite(dir) => Store::open_sqlite(&dir.path().join("sluice.db")).await,
            Db::Postgres(url) => Store::open(url).await,
        };
        match opened {
            Ok(store) => store,
            Err(e) => panic!("open the store: {e}: {:?}", std::error::Error::source(&e)),
        }
    }
}

/// Runs each `async fn case(db: &Db)` on SQLite as its own test, and all of them on PostgreSQL
/// in one test (`postgres_every_case`) that starts one server and gives each case a new
/// database.
macro_rules! every_backend {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    super::$case(&super::Db::Sqlite(dir)).await;
                }
            )*
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn postgres_every_case() {
            let server = sluice_tests::Postgres::start();
            $(
                eprintln!("postgres: {}", stringify!($case));
                $case(&Db::Postgres(server.create_database())).await;
            )*
        }
    };
}
