DROP INDEX products_updated;
DROP INDEX orders_updated;
