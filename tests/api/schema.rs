//! The hand-written `src/db/schema.rs` matches what the migrations create, on both backends: the
//! same tables, the same columns, each of the same type class and nullability. diesel checks a
//! query against schema.rs only, so a column declared `Integer` that a migration made `BIGINT`, or
//! one declared non-null that a migration left nullable, would otherwise fail only at run time.
//! The declared side is parsed from schema.rs itself, so a table added there is checked too.

use std::collections::BTreeMap;

use diesel::RunQueryDsl;

use crate::both_backends;
use crate::helpers::{Backend, TestApp};

both_backends!(
    schema_rs_matches_the_migrated_database,
    a_changed_column_is_reported
);

/// Tables the migrations create for diesel's own bookkeeping, not for wharf.
const NOT_WHARFS: &[&str] = &["__diesel_schema_migrations"];

/// The column types of schema.rs, by what both backends must agree on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// `Integer`: a 32-bit integer on PostgreSQL.
    Int32,
    /// `BigInt`: a 64-bit integer on PostgreSQL.
    Int64,
    Text,
    /// `Timestamp`: without a time zone.
    Timestamp,
    Bool,
}

/// One column: its type class and whether it may be NULL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Column {
    class: Class,
    nullable: bool,
}

/// Table name → column name → column.
type Tables = BTreeMap<String, BTreeMap<String, Column>>;

/// The tables of the `diesel::table!` blocks of schema.rs. Panics on a line it does not
/// understand, so a new kind of declaration gets a rule here instead of going unchecked.
fn declared(schema: &str) -> Tables {
    let mut tables = Tables::new();
    // Doc comments say what a table or column is for; they declare nothing.
    let mut lines = schema
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("//"));
    while let Some(line) = lines.next() {
        if line != "diesel::table! {" {
            continue;
        }
        let head = lines.next().expect("a table after `diesel::table! {`");
        let (name, _key) = head
            .strip_suffix('{')
            .and_then(|h| h.trim().split_once(' '))
            .unwrap_or_else(|| panic!("schema.rs: expected `name (key) {{`, found {head:?}"));
        let mut columns = BTreeMap::new();
        for line in lines.by_ref() {
            if line == "}" {
                break;
            }
            let (column, ty) = line
                .strip_suffix(',')
                .and_then(|l| l.split_once(" -> "))
                .unwrap_or_else(|| panic!("schema.rs, table {name}: not a column: {line:?}"));
            columns.insert(column.to_string(), declared_column(name, ty));
        }
        assert_eq!(
            lines.next(),
            Some("}"),
            "schema.rs: table {name} not closed"
        );
        tables.insert(name.to_string(), columns);
    }
    assert!(
        !tables.is_empty(),
        "no diesel::table! block found in schema.rs"
    );
    tables
}

/// A column type of schema.rs, e.g. `Nullable<Timestamp>`.
fn declared_column(table: &str, ty: &str) -> Column {
    let (nullable, inner) = match ty
        .strip_prefix("Nullable<")
        .and_then(|t| t.strip_suffix('>'))
    {
        Some(inner) => (true, inner),
        None => (false, ty),
    };
    let class = match inner {
        "Integer" => Class::Int32,
        "BigInt" => Class::Int64,
        "Text" => Class::Text,
        "Timestamp" => Class::Timestamp,
        "Bool" => Class::Bool,
        other => panic!("schema.rs, table {table}: no type class for {other} (add one here)"),
    };
    Column { class, nullable }
}

#[derive(diesel::QueryableByName)]
struct DbColumn {
    #[diesel(sql_type = diesel::sql_types::Text)]
    table_name: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    column_name: String,
    /// PostgreSQL's `data_type`, or SQLite's declared type.
    #[diesel(sql_type = diesel::sql_types::Text)]
    data_type: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    nullable: bool,
}

/// Every column of the migrated database, as the database describes it.
fn introspect(conn: &mut wharf::db::DbConnection, backend: Backend) -> Vec<DbColumn> {
    let sql = match backend {
        Backend::Postgres => {
            "SELECT table_name::text AS table_name, column_name::text AS column_name, \
             data_type::text AS data_type, is_nullable = 'YES' AS nullable \
             FROM information_schema.columns WHERE table_schema = current_schema()"
        }
        // A key column counts as NOT NULL. SQLite lets a PRIMARY KEY column other than the rowid
        // hold NULL unless it also says NOT NULL (a quirk it keeps for compatibility), and ten of
        // wharf's SQLite key columns say PRIMARY KEY alone; wharf never writes NULL there, and
        // PostgreSQL, which enforces it, is checked for the same columns.
        Backend::Sqlite => {
            "SELECT t.name AS table_name, c.name AS column_name, c.type AS data_type, \
             NOT (c.\"notnull\" OR c.pk > 0) AS nullable \
             FROM sqlite_master t, pragma_table_info(t.name) c \
             WHERE t.type = 'table' AND t.name NOT LIKE 'sqlite_%'"
        }
    };
    diesel::sql_query(sql)
        .load(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// The class a database type belongs to, or `None` when it is none of them. SQLite stores by
/// affinity: its INTEGER is 64-bit whatever schema.rs says, so both integer classes match it.
fn actual_class(backend: Backend, data_type: &str, declared: Class) -> Option<Class> {
    let t = data_type.to_ascii_lowercase();
    match backend {
        Backend::Postgres => match t.as_str() {
            "integer" => Some(Class::Int32),
            "bigint" => Some(Class::Int64),
            "text" | "character varying" => Some(Class::Text),
            "timestamp without time zone" => Some(Class::Timestamp),
            "boolean" => Some(Class::Bool),
            _ => None,
        },
        Backend::Sqlite => match t.as_str() {
            "integer" | "bigint" if matches!(declared, Class::Int32 | Class::Int64) => {
                Some(declared)
            }
            "integer" | "bigint" => Some(Class::Int64),
            "text" => Some(Class::Text),
            "timestamp" | "datetime" => Some(Class::Timestamp),
            "boolean" | "bool" => Some(Class::Bool),
            _ => None,
        },
    }
}

/// Where `declared` and the database differ, one line each.
fn differences(declared: &Tables, actual: &[DbColumn], backend: Backend) -> Vec<String> {
    let mut found = Vec::new();
    let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for c in actual
        .iter()
        .filter(|c| !NOT_WHARFS.contains(&c.table_name.as_str()))
    {
        seen.entry(&c.table_name).or_default().push(&c.column_name);
        let at = format!("{}.{}", c.table_name, c.column_name);
        let Some(want) = declared
            .get(&c.table_name)
            .and_then(|t| t.get(&c.column_name))
        else {
            found.push(format!("{at} ({}) is not in schema.rs", c.data_type));
            continue;
        };
        match actual_class(backend, &c.data_type, want.class) {
            Some(class) if class == want.class => {}
            _ => found.push(format!(
                "{at}: schema.rs says {:?}, the database has {}",
                want.class, c.data_type
            )),
        }
        if c.nullable != want.nullable {
            found.push(format!(
                "{at}: schema.rs says {}, the database has it {}",
                if want.nullable {
                    "nullable"
                } else {
                    "not null"
                },
                if c.nullable { "nullable" } else { "NOT NULL" }
            ));
        }
    }
    for (table, columns) in declared {
        let have = seen.get(table.as_str());
        for column in columns.keys() {
            if !have.is_some_and(|h| h.contains(&column.as_str())) {
                found.push(format!(
                    "{table}.{column} is in schema.rs, not in the database"
                ));
            }
        }
    }
    found
}

async fn schema_rs_matches_the_migrated_database(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let declared = declared(include_str!("../../src/db/schema.rs"));
    let actual = app.with_conn(move |c| introspect(c, backend)).await;
    let found = differences(&declared, &actual, backend);
    assert!(
        found.is_empty(),
        "src/db/schema.rs and the migrations differ on {backend:?}:\n{}",
        found.join("\n")
    );
}

/// The comparison sees a column whose type, nullability or presence schema.rs gets wrong.
async fn a_changed_column_is_reported(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let mut declared = declared(include_str!("../../src/db/schema.rs"));
    let actual = app.with_conn(move |c| introspect(c, backend)).await;
    let requests = declared
        .get_mut("requests")
        .expect("schema.rs declares requests");
    requests
        .get_mut("attempts")
        .expect("requests.attempts")
        .class = Class::Text;
    requests.get_mut("body").expect("requests.body").nullable = false;
    requests.remove("conflict");
    requests.insert(
        "invented".into(),
        Column {
            class: Class::Int64,
            nullable: true,
        },
    );
    let found = differences(&declared, &actual, backend);
    let expected = [
        "requests.attempts: schema.rs says Text",
        "requests.body: schema.rs says not null, the database has it nullable",
        "requests.conflict (",
        "requests.invented is in schema.rs, not in the database",
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for e in expected {
        assert!(
            found.iter().any(|f| f.starts_with(e)),
            "{e:?} not in {found:#?}"
        );
    }
}
