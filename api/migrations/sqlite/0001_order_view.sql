-- The order view: one row per order, its status events, and how far each topic partition has
-- been applied (written in the same transaction as the rows it produced).
-- Times are nanoseconds since the Unix epoch, so every timestamp reads back exactly as sent.
CREATE TABLE pedidos (
    id               TEXT PRIMARY KEY NOT NULL,
    usuario          TEXT NOT NULL,
    -- NULL until the order itself is read (its status events may come first).
    produto          TEXT,
    quantidade       INTEGER,
    valor            TEXT,
    data_solicitacao INTEGER,
    -- What listings sort by, newest first: dataSolicitacao, or the first event's time.
    recebido         INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX pedidos_por_recebido ON pedidos (recebido DESC, id DESC);
CREATE INDEX pedidos_por_usuario ON pedidos (usuario, recebido DESC, id DESC);

CREATE TABLE eventos (
    evento_id   TEXT PRIMARY KEY NOT NULL,
    pedido_id   TEXT NOT NULL,
    status      TEXT NOT NULL,
    motivo      TEXT,
    data_evento INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX eventos_por_pedido ON eventos (pedido_id);

CREATE TABLE offsets (
    topic       TEXT NOT NULL,
    part        INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, part)
) WITHOUT ROWID;
