-- Each order's events kept together: keyed by (pedido_id, evento_id) rather than by the event
-- id alone, whose values (UUIDv5) are random, so writing an event touches its order's index
-- page rather than a random one, and the separate index on pedido_id goes away. The pair is
-- as unique as the event id, which is derived from the order's.
ALTER TABLE eventos DROP CONSTRAINT eventos_pkey;
ALTER TABLE eventos ADD PRIMARY KEY (pedido_id, evento_id);
DROP INDEX eventos_por_pedido;
