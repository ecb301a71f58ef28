-- Orders placed with an Idempotency-Key (UUIDv5 ids) that the view's retention pruned: their id
-- and dataSolicitacao only, so a retried key is still told it expired (422) instead of placing
-- its order a second time under the same id.
CREATE TABLE pruned_keys (
    id               TEXT PRIMARY KEY NOT NULL,
    data_solicitacao INTEGER NOT NULL
) WITHOUT ROWID;
