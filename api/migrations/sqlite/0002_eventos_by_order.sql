-- Each order's events kept together: keyed by (pedido_id, evento_id) rather than by the event
-- id alone, whose values (UUIDv5) are random, so writing an event touches its order's page
-- rather than a random one, and the separate index on pedido_id goes away. The pair is as
-- unique as the event id, which is derived from the order's.
CREATE TABLE eventos_por_pedido_pk (
    pedido_id   TEXT NOT NULL,
    evento_id   TEXT NOT NULL,
    status      TEXT NOT NULL,
    motivo      TEXT,
    data_evento INTEGER NOT NULL,
    PRIMARY KEY (pedido_id, evento_id)
) WITHOUT ROWID;
INSERT INTO eventos_por_pedido_pk (pedido_id, evento_id, status, motivo, data_evento)
    SELECT pedido_id, evento_id, status, motivo, data_evento FROM eventos;
DROP TABLE eventos;
ALTER TABLE eventos_por_pedido_pk RENAME TO eventos;
