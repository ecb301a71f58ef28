//! The order view's store: SQLite (embedded, the default) or PostgreSQL (shared by several API
//! instances), through sqlx's `Any` driver so one set of queries serves both. The view's rows
//! and the offsets they were read up to are written in one transaction ([`WriteConnection`]), so a
//! restart resumes where the view stands and never re-reads the topics from the start.

mod lock;
mod prune;
mod rows;

use std::collections::HashMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::DateTime;
use rust_decimal::Decimal;
use shared::config::{ApiConfig, StoreKind};
use shared::events::{Order, Status};
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Executor as _, Row as _};
use uuid::Uuid;

use super::{Changes, HistoryEntry, OrderView};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the order store {store} (api.store_url): {source}")]
    Open { store: String, source: sqlx::Error },
    #[error("cannot open the order store {store} (api.store_url): {source}")]
    InUse {
        store: String,
        source: lock::LockError,
    },
    #[error("cannot migrate the order store {store} (api.store_url): {source}")]
    Migrate {
        store: String,
        source: sqlx::migrate::MigrateError,
    },
    #[error("order store: {0}")]
    Query(#[from] sqlx::Error),
    #[error("order store holds a malformed row: {0}")]
    Malformed(String),
    #[error("order store: order {id} was accepted here but is not written yet after {waited:?}")]
    Unwritten { id: Uuid, waited: Duration },
    #[error("the order store {store} cannot be written: {reason}")]
    CannotWrite { store: String, reason: String },
}

/// How long opening the store, or any one query's wait for a connection, may take.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite connections: each keeps a page cache of up to 256 KiB.
const SQLITE_CONNECTIONS: u32 = 4;

static SQLITE: sqlx::migrate::Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES: sqlx::migrate::Migrator = sqlx::migrate!("migrations/postgres");

/// A connection pool to the view's store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    kind: StoreKind,
    /// `api.store_url` without credentials, for messages.
    label: String,
    /// An SQLite file's: held while any clone lives.
    _one_instance: Option<Arc<lock::OneInstance>>,
}

impl Store {
    /// Connects (creating an SQLite file if missing) and runs the pending migrations.
    pub async fn open(api: &ApiConfig) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let store = api.store_label();
        let open = |source| StoreError::Open {
            store: store.clone(),
            source,
        };
        let kind = api.store_kind().expect("api.store_url was validated");
        let mut url = api.store_url.expose().to_string();
        if kind == StoreKind::Sqlite && !url.contains('?') {
            url.push_str("?mode=rwc");
        }
        let options = AnyConnectOptions::from_str(&url).map_err(open)?;
        let one_instance = match kind {
            StoreKind::Sqlite => sqlite_file(&url)
                .map_err(open)?
                .map(|file| lock::OneInstance::take(&file))
                .transpose()
                .map_err(|source| StoreError::InUse {
                    store: store.clone(),
                    source,
                })?
                .map(Arc::new),
            StoreKind::Postgres => None,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match kind {
                // One writer at a time anyway; readers never wait for it (WAL).
                StoreKind::Sqlite => SQLITE_CONNECTIONS,
                StoreKind::Postgres => 8,
            })
            // All of them from the start: the process's footprint is in place before the view
            // grows, rather than stepping up as the pool does.
            .min_connections(match kind {
                StoreKind::Sqlite => SQLITE_CONNECTIONS,
                StoreKind::Postgres => 1,
            })
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if kind == StoreKind::Sqlite {
                        // WAL: readers never wait for the writer. NORMAL: a commit survives the
                        // process being killed; only a power cut may lose the last ones, and
                        // their offsets with them, so they are read again.
                        // A small page cache per connection (256 KiB): the process's memory
                        // stays flat however large the view grows; the kernel caches the file.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA cache_size = -256;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await
            .map_err(open)?;
        let migrator = match kind {
            StoreKind::Sqlite => &SQLITE,
            StoreKind::Postgres => &POSTGRES,
        };
        migrator
            .run(&pool)
            .await
            .map_err(|source| StoreError::Migrate {
                store: store.clone(),
                source,
            })?;
        Ok(Self {
            pool,
            kind,
            label: store,
            _one_instance: one_instance,
        })
    }

    /// `api.store_url` without credentials.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Whether several API instances may share it (PostgreSQL), rather than this one alone.
    pub fn is_shared(&self) -> bool {
        self.kind == StoreKind::Postgres
    }

    /// One order's view, if the store knows it.
    pub async fn get(&self, id: Uuid) -> Result<Option<OrderView>, StoreError> {
        let row = sqlx::query(&format!("{SELECT_ORDERS} WHERE id = $1"))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else { return Ok(None) };
        Ok(self.assemble(vec![row]).await?.pop())
    }

    /// A page of orders, newest first: everyone's, or one customer's; and how many there are.
    pub async fn page(
        &self,
        usuario: Option<&str>,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<OrderView>), StoreError> {
        let (filter, count) = match usuario {
            Some(_) => (
                "WHERE usuario = $1 ORDER BY recebido DESC, id DESC LIMIT $2 OFFSET $3",
                "SELECT COUNT(*) AS n FROM pedidos WHERE usuario = $1",
            ),
            None => (
                "ORDER BY recebido DESC, id DESC LIMIT $1 OFFSET $2",
                "SELECT COUNT(*) AS n FROM pedidos",
            ),
        };
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (rows, total) = match usuario {
            Some(u) => (
                sqlx::query(&format!("{SELECT_ORDERS} {filter}"))
                    .bind(u.to_string())
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&self.pool)
                    .await?,
                sqlx::query(count)
                    .bind(u.to_string())
                    .fetch_one(&self.pool)
                    .await?,
            ),
            None => (
                sqlx::query(&format!("{SELECT_ORDERS} {filter}"))
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(&self.pool)
                    .await?,
                sqlx::query(count).fetch_one(&self.pool).await?,
            ),
        };
        let total: i64 = total.try_get("n")?;
        Ok((total.max(0) as u64, self.assemble(rows).await?))
    }

    /// How many orders the view holds.
    pub async fn count(&self) -> Result<u64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM pedidos")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")?.max(0) as u64)
    }

    /// The next offset to read of every partition the view has read, by (topic, partition).
    pub async fn offsets(&self) -> Result<HashMap<(String, i32), i64>, StoreError> {
        let rows = sqlx::query("SELECT topic, part, next_offset FROM offsets")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let part: i64 = r.try_get("part")?;
                Ok((
                    (r.try_get("topic")?, part as i32),
                    r.try_get("next_offset")?,
                ))
            })
            .collect()
    }

    /// The id of the Kafka cluster the view was built from, once recorded.
    pub async fn built_from(&self) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT id FROM built_from WHERE what = 'cluster'")
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// Whether the view holds anything read from a cluster: any offset.
    pub async fn has_read(&self) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM offsets")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<i64, _>("n")? > 0)
    }

    /// The Kafka id (KIP-516) of each topic the view was read from, by name, once recorded.
    pub async fn built_from_topics(&self) -> Result<HashMap<String, String>, StoreError> {
        let rows = sqlx::query("SELECT what, id FROM built_from WHERE what LIKE 'topic:%'")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                let what: String = r.try_get("what")?;
                let topic = what.trim_start_matches("topic:").to_string();
                Ok((topic, r.try_get("id")?))
            })
            .collect()
    }

    /// Empties the view when `empty` (orders, events, offsets, pruned keys) and records `cluster`
    /// and `topics` (name → topic id) as what it is built from, in one transaction.
    pub async fn build_from(
        &self,
        cluster: &str,
        topics: &HashMap<String, String>,
        empty: bool,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        if empty {
            for table in ["pedidos", "eventos", "offsets", "pruned_keys"] {
                sqlx::query(&format!("DELETE FROM {table}"))
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query("DELETE FROM built_from")
            .execute(&mut *tx)
            .await?;
        let what = std::iter::once(("cluster".to_string(), cluster.to_string())).chain(
            topics
                .iter()
                .map(|(t, id)| (format!("topic:{t}"), id.clone())),
        );
        for (what, id) in what {
            sqlx::query("INSERT INTO built_from (what, id) VALUES ($1, $2)")
                .bind(what)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A connection of its own for the one task that writes, held from commit to commit.
    pub fn write_connection(&self) -> WriteConnection {
        WriteConnection {
            store: self.clone(),
            conn: None,
        }
    }

    /// The views of these order rows, with their events (one more query for all of them).
    async fn assemble(&self, rows: Vec<AnyRow>) -> Result<Vec<OrderView>, StoreError> {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = rows
            .iter()
            .map(|r| r.try_get("id"))
            .collect::<Result<_, _>>()?;
        let events_of = match self.kind {
            StoreKind::Sqlite => rows::SQLITE_EVENTS_OF,
            StoreKind::Postgres => rows::POSTGRES_EVENTS_OF,
        };
        let ids = serde_json::to_string(&ids).expect("strings serialize");
        let query = sqlx::query(events_of).bind(ids);
        let mut history: HashMap<String, Vec<HistoryEntry>> = HashMap::new();
        for e in query.fetch_all(&self.pool).await? {
            let status: String = e.try_get("status")?;
            let entry = HistoryEntry {
                evento_id: uuid(&e.try_get::<String, _>("evento_id")?)?,
                status: status_of(&status)?,
                motivo: e.try_get("motivo")?,
                data_evento: DateTime::from_timestamp_nanos(e.try_get("data_evento")?),
            };
            history
                .entry(e.try_get("pedido_id")?)
                .or_default()
                .push(entry);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                let usuario: String = r.try_get("usuario")?;
                let order = match (
                    r.try_get::<Option<String>, _>("produto")?,
                    r.try_get::<Option<i64>, _>("quantidade")?,
                    r.try_get::<Option<String>, _>("valor")?,
                    r.try_get::<Option<i64>, _>("data_solicitacao")?,
                ) {
                    (Some(produto), Some(quantidade), Some(valor), Some(at)) => Some(Order {
                        id: uuid(&id)?,
                        usuario: usuario.clone(),
                        produto,
                        quantidade: u32::try_from(quantidade).map_err(|_| {
                            StoreError::Malformed(format!("quantidade {quantidade}"))
                        })?,
                        valor: Decimal::from_str(&valor)
                            .map_err(|_| StoreError::Malformed(format!("valor {valor:?}")))?,
                        data_solicitacao: DateTime::from_timestamp_nanos(at),
                    }),
                    _ => None,
                };
                let entries = history.remove(&id).unwrap_or_default();
                Ok(OrderView::assemble(uuid(&id)?, usuario, order, entries))
            })
            .collect()
    }
}

/// The writer's connection: each commit is one call on it, without a trip through the pool
/// (which hands a connection back through a task of its own). On SQLite the whole transaction,
/// `BEGIN` to `COMMIT`, is one call: one trip to sqlx's worker thread per commit instead of
/// five; those trips, threads waking each other, were most of a small commit's cost.
pub struct WriteConnection {
    store: Store,
    conn: Option<PoolConnection<Any>>,
}

impl WriteConnection {
    /// Writes a batch in one transaction: rows, events and offsets together, or none of them.
    /// Idempotent: a replayed batch changes nothing, and offsets only move forward.
    pub async fn write(&mut self, changes: &Changes) -> Result<(), StoreError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => self.conn.insert(self.store.pool.acquire().await?),
        };
        let written = write(self.store.kind, conn, changes).await;
        if written.is_err() {
            // Closed rather than reused: whatever a failed call left open goes with it.
            if let Some(mut conn) = self.conn.take() {
                conn.close_on_drop();
            }
        }
        written
    }
}

async fn write(
    kind: StoreKind,
    conn: &mut AnyConnection,
    changes: &Changes,
) -> Result<(), StoreError> {
    let [orders, events, offsets] = rows::as_json(changes);
    match kind {
        StoreKind::Sqlite => {
            sqlx::query(rows::SQLITE_WRITE)
                .bind(orders)
                .bind(events)
                .bind(offsets)
                .execute(conn)
                .await?;
        }
        // One statement per call is what PostgreSQL's extended protocol takes.
        StoreKind::Postgres => {
            let mut tx = conn.begin().await?;
            for (sql, json) in rows::POSTGRES_WRITE
                .into_iter()
                .zip([orders, events, offsets])
            {
                if json != "[]" {
                    sqlx::query(sql).bind(json).execute(&mut *tx).await?;
                }
            }
            tx.commit().await?;
        }
    }
    Ok(())
}

const SELECT_ORDERS: &str =
    "SELECT id, usuario, produto, quantidade, valor, data_solicitacao FROM pedidos";

fn nanos(at: DateTime<chrono::Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap_or(i64::MAX)
}

fn uuid(text: &str) -> Result<Uuid, StoreError> {
    Uuid::try_parse(text).map_err(|_| StoreError::Malformed(format!("id {text:?}")))
}

/// The database file an SQLite URL names; none for an in-memory database (`sqlite::memory:`,
/// `mode=memory`), as sqlx reads them.
fn sqlite_file(url: &str) -> Result<Option<PathBuf>, sqlx::Error> {
    let (database, query) = url.split_once('?').unwrap_or((url, ""));
    let database = database
        .trim_start_matches("sqlite:")
        .trim_start_matches("//");
    let in_memory = database == ":memory:" || query.split('&').any(|pair| pair == "mode=memory");
    if in_memory {
        return Ok(None);
    }
    let options = SqliteConnectOptions::from_str(url)?;
    Ok(Some(options.get_filename().to_path_buf()))
}

fn status_of(text: &str) -> Result<Status, StoreError> {
    [Status::Analise, Status::Aprovado, Status::Recusado]
        .into_iter()
        .find(|s| s.as_str() == text)
        .ok_or_else(|| StoreError::Malformed(format!("status {text:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_sqlite_url_names_its_file_and_an_in_memory_one_none() {
        for (url, file) in [
            ("sqlite:pedidos-api.db?mode=rwc", Some("pedidos-api.db")),
            (
                "sqlite:///var/lib/pedidos/view.db",
                Some("/var/lib/pedidos/view.db"),
            ),
            ("sqlite::memory:", None),
            ("sqlite::memory:?mode=rwc", None),
            ("sqlite://?mode=memory", None),
        ] {
            let found = sqlite_file(url).unwrap();
            assert_eq!(found.as_deref(), file.map(std::path::Path::new), "{url}");
        }
    }
}
