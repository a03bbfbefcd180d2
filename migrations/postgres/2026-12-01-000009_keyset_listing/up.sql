-- Keyset listing for storefront reconciliation: `GET /api/v1/orders?updated_after=` and
-- `GET /api/v1/products?updated_after=` page in (updated_at, id) / (updated_at, sku) order.
CREATE INDEX orders_updated ON orders (updated_at, id);
CREATE INDEX products_updated ON products (updated_at, sku);
