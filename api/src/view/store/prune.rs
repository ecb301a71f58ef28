//! The retention's SQL: final orders older than a cutoff leave the view in bounded batches, each
//! its own short transaction; a keyed order leaves its id and `dataSolicitacao` behind
//! (`pruned_keys`), so a retried key is still told it expired.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shared::config::StoreKind;
use sqlx::Row as _;
use uuid::Uuid;

use super::{nanos, Store, StoreError};

/// The oldest final orders before the cutoff (`$1`), at most `$2` of them.
const FINAL_BEFORE: &str = "\
SELECT id, data_solicitacao FROM pedidos p WHERE recebido < $1 AND EXISTS (\
SELECT 1 FROM eventos e WHERE e.pedido_id = p.id AND e.status IN ('Aprovado', 'Recusado')) \
ORDER BY recebido LIMIT $2";

const SQLITE_KEEP_KEYS: &str = "\
INSERT INTO pruned_keys (id, data_solicitacao) \
SELECT value ->> 'id', value ->> 'data_solicitacao' FROM json_each(?) WHERE true \
ON CONFLICT (id) DO NOTHING";
const SQLITE_DROP_EVENTS: &str =
    "DELETE FROM eventos WHERE pedido_id IN (SELECT value FROM json_each(?))";
const SQLITE_DROP_ORDERS: &str = "DELETE FROM pedidos WHERE id IN (SELECT value FROM json_each(?))";

const POSTGRES_KEEP_KEYS: &str = "\
INSERT INTO pruned_keys (id, data_solicitacao) \
SELECT id, data_solicitacao FROM json_populate_recordset(NULL::pruned_keys, $1::json) \
ON CONFLICT (id) DO NOTHING";
const POSTGRES_DROP_EVENTS: &str =
    "DELETE FROM eventos WHERE pedido_id IN (SELECT json_array_elements_text($1::json))";
const POSTGRES_DROP_ORDERS: &str =
    "DELETE FROM pedidos WHERE id IN (SELECT json_array_elements_text($1::json))";

#[derive(Serialize)]
struct PrunedKey {
    id: String,
    data_solicitacao: i64,
}

impl Store {
    /// Prunes up to `limit` of the oldest orders that have their verdict and were received
    /// before `cutoff`: their events and rows, in one transaction. Returns how many; 0 once
    /// none is left. Orders placed with an `Idempotency-Key` (UUIDv5 ids) leave their id and
    /// date in `pruned_keys`. Offsets are not touched.
    pub async fn prune(&self, cutoff: DateTime<Utc>, limit: u32) -> Result<u64, StoreError> {
        // Read outside the transaction: the rows it names are old and final, so nothing but the
        // pruning changes them, and the writer is not held up by a read lock upgraded late.
        let rows = sqlx::query(FINAL_BEFORE)
            .bind(nanos(cutoff))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut ids = Vec::with_capacity(rows.len());
        let mut keys = Vec::new();
        for row in &rows {
            let id: String = row.try_get("id")?;
            let placed: Option<i64> = row.try_get("data_solicitacao")?;
            let keyed = Uuid::try_parse(&id).is_ok_and(|u| u.get_version_num() == 5);
            if let (true, Some(data_solicitacao)) = (keyed, placed) {
                keys.push(PrunedKey {
                    id: id.clone(),
                    data_solicitacao,
                });
            }
            ids.push(id);
        }
        let [keep_keys, drop_events, drop_orders] = match self.kind {
            StoreKind::Sqlite => [SQLITE_KEEP_KEYS, SQLITE_DROP_EVENTS, SQLITE_DROP_ORDERS],
            StoreKind::Postgres => [
                POSTGRES_KEEP_KEYS,
                POSTGRES_DROP_EVENTS,
                POSTGRES_DROP_ORDERS,
            ],
        };
        let ids_json = serde_json::to_string(&ids).expect("strings serialize");
        let mut tx = self.pool.begin().await?;
        if !keys.is_empty() {
            let keys = serde_json::to_string(&keys).expect("keys serialize");
            sqlx::query(keep_keys).bind(keys).execute(&mut *tx).await?;
        }
        sqlx::query(drop_events)
            .bind(ids_json.clone())
            .execute(&mut *tx)
            .await?;
        sqlx::query(drop_orders)
            .bind(ids_json)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(ids.len() as u64)
    }

    /// When the keyed order `id` was placed, if the retention pruned it.
    pub async fn pruned_key(&self, id: Uuid) -> Result<Option<DateTime<Utc>>, StoreError> {
        let row = sqlx::query("SELECT data_solicitacao FROM pruned_keys WHERE id = $1")
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            r.try_get::<i64, _>("data_solicitacao")
                .map(DateTime::from_timestamp_nanos)
        })
        .transpose()
        .map_err(StoreError::from)
    }
}
