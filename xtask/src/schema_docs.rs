//! Diagrams of the schema, read from the live database's catalog.
//!
//! The conceptual model (MCD) is one entity-relationship diagram per domain; the logical model
//! (MLD) one diagram with every table, column, type and key; the UML view a class diagram. Each
//! table's domain comes from its `COMMENT` ("Domain: X. ..."), so nothing here is a hand-kept
//! list: a new table, column or key shows up the next time the diagrams are generated, and the
//! staleness test fails until they are.

use anyhow::{Context, Result, bail};
use sqlx::PgPool;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

#[derive(Debug, Clone)]
struct Table {
    name: String,
    domain: String,
    description: String,
    columns: Vec<Column>,
}

#[derive(Debug, Clone)]
struct Column {
    name: String,
    data_type: String,
    nullable: bool,
    keys: BTreeSet<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Relation {
    /// The referenced (parent) table.
    parent: String,
    /// The referencing (child) table.
    child: String,
    columns: Vec<String>,
    /// Every referencing column is NOT NULL.
    mandatory: bool,
    /// The referencing columns are also unique: at most one child per parent.
    one_to_one: bool,
    on_delete: String,
}

struct Model {
    tables: Vec<Table>,
    relations: Vec<Relation>,
}

async fn read(pool: &PgPool) -> Result<Model> {
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "SELECT c.relname::text, obj_description(c.oid, 'pg_class')
           FROM pg_class c
          WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace AND c.relname <> '_sqlx_migrations'
          ORDER BY 1",
    )
    .fetch_all(pool)
    .await?;
    let mut tables = Vec::new();
    for (name, comment) in rows {
        let comment = comment.with_context(|| format!("table {name} has no COMMENT naming its domain"))?;
        let Some(rest) = comment.strip_prefix("Domain: ") else {
            bail!("the COMMENT of table {name} must start with \"Domain: \"");
        };
        let (domain, description) = rest.split_once(". ").unwrap_or((rest, ""));
        tables.push(Table {
            name,
            domain: domain.to_owned(),
            description: description.trim().to_owned(),
            columns: Vec::new(),
        });
    }

    let columns: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT c.relname::text, a.attname::text,
                CASE WHEN t.typtype = 'd' THEN t.typname::text ELSE format_type(a.atttypid, NULL) END,
                NOT a.attnotnull
           FROM pg_attribute a
           JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_type t ON t.oid = a.atttypid
          WHERE c.relkind = 'r' AND c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
          ORDER BY c.relname, a.attnum",
    )
    .fetch_all(pool)
    .await?;
    for (table, name, data_type, nullable) in columns {
        if let Some(t) = tables.iter_mut().find(|t| t.name == table) {
            t.columns.push(Column { name, data_type: short_type(&data_type), nullable, keys: BTreeSet::new() });
        }
    }

    // Primary keys, unique constraints/indexes and foreign keys, with their columns.
    let keys: Vec<(String, String, Vec<String>)> = sqlx::query_as(
        "SELECT c.relname::text, k.contype::text,
                array(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                        JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i)
           FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid
          WHERE k.connamespace = 'public'::regnamespace AND k.contype IN ('p', 'u', 'f')
          ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await?;
    let mut unique_sets: BTreeMap<String, Vec<Vec<String>>> = BTreeMap::new();
    for (table, kind, cols) in &keys {
        let marker = match kind.as_str() {
            "p" => "PK",
            "u" => "UK",
            _ => "FK",
        };
        if marker != "FK" {
            unique_sets.entry(table.clone()).or_default().push(cols.clone());
        }
        if let Some(t) = tables.iter_mut().find(|t| &t.name == table) {
            for col in t.columns.iter_mut().filter(|c| cols.contains(&c.name)) {
                // A column in a composite key is marked too: that is what a logical model shows.
                col.keys.insert(marker);
            }
        }
    }

    let fks: Vec<(String, String, Vec<String>, String)> = sqlx::query_as(
        "SELECT child.relname::text, parent.relname::text,
                array(SELECT a.attname::text FROM unnest(k.conkey) WITH ORDINALITY u(n, i)
                        JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = u.n ORDER BY u.i),
                CASE k.confdeltype WHEN 'c' THEN 'cascade' WHEN 'n' THEN 'set null' WHEN 'r' THEN 'restrict'
                                   WHEN 'd' THEN 'set default' ELSE 'no action' END
           FROM pg_constraint k
           JOIN pg_class child ON child.oid = k.conrelid
           JOIN pg_class parent ON parent.oid = k.confrelid
          WHERE k.connamespace = 'public'::regnamespace AND k.contype = 'f'
          ORDER BY 1, 2, 3",
    )
    .fetch_all(pool)
    .await?;
    let mut relations = Vec::new();
    for (child, parent, columns, on_delete) in fks {
        let table = tables.iter().find(|t| t.name == child).context("foreign key on an unknown table")?;
        let mandatory = columns.iter().all(|c| table.columns.iter().any(|col| &col.name == c && !col.nullable));
        let one_to_one =
            unique_sets.get(&child).is_some_and(|sets| sets.iter().any(|set| set.iter().all(|c| columns.contains(c))));
        relations.push(Relation { parent, child, columns, mandatory, one_to_one, on_delete });
    }
    relations.sort();
    relations.dedup_by(|a, b| a.parent == b.parent && a.child == b.child && a.columns == b.columns);
    Ok(Model { tables, relations })
}

/// Mermaid identifiers cannot hold spaces or brackets.
fn short_type(data_type: &str) -> String {
    let base = match data_type.trim_end_matches("[]") {
        "timestamp with time zone" => "timestamptz",
        "timestamp without time zone" => "timestamp",
        "character varying" => "varchar",
        "double precision" => "float8",
        other => other,
    };
    let mut out = base.replace(' ', "_");
    if data_type.ends_with("[]") {
        out.push_str("_array");
    }
    out
}

fn cardinality(r: &Relation) -> &'static str {
    match (r.mandatory, r.one_to_one) {
        (true, true) => "||--||",
        (true, false) => "||--o{",
        (false, true) => "|o--o|",
        (false, false) => "|o--o{",
    }
}

fn label(r: &Relation) -> String {
    format!("\"{} ({})\"", r.columns.join(", "), r.on_delete)
}

const HEADER: &str = "<!-- Generated by `cargo xtask schema-docs` from the migrated database. Do not edit. -->\n\n";

fn conceptual(model: &Model) -> String {
    let mut out = String::from(HEADER);
    out.push_str("# Conceptual model (MCD)\n\nOne diagram per domain: its entities, how they relate, and the entities of other domains they refer to. Cardinalities come from the foreign keys (nullable or not, unique or not).\n");
    let domains: BTreeSet<&str> = model.tables.iter().map(|t| t.domain.as_str()).collect();
    for domain in domains {
        let members: Vec<&Table> = model.tables.iter().filter(|t| t.domain == domain).collect();
        let names: BTreeSet<&str> = members.iter().map(|t| t.name.as_str()).collect();
        let _ = writeln!(out, "\n## {domain}\n");
        for t in &members {
            let _ = writeln!(out, "- `{}`: {}", t.name, t.description);
        }
        out.push_str("\n```mermaid\nerDiagram\n");
        for t in &members {
            let _ = writeln!(out, "    {}", t.name);
        }
        let mut seen = BTreeSet::new();
        for r in
            model.relations.iter().filter(|r| names.contains(r.child.as_str()) || names.contains(r.parent.as_str()))
        {
            // Show a cross-domain link only from the child's side, so each edge appears once per diagram.
            if !names.contains(r.child.as_str()) && !names.contains(r.parent.as_str()) {
                continue;
            }
            if seen.insert((r.parent.clone(), r.child.clone(), r.columns.clone())) {
                let _ = writeln!(out, "    {} {} {} : {}", r.parent, cardinality(r), r.child, label(r));
            }
        }
        out.push_str("```\n");
    }
    out
}

fn logical(model: &Model) -> String {
    let mut out = String::from(HEADER);
    out.push_str("# Logical model (MLD)\n\nEvery table with every column, its PostgreSQL type (domains by name) and its keys: PK primary key, FK foreign key, UK part of a unique constraint. \"null\" marks nullable columns.\n\n```mermaid\nerDiagram\n");
    for t in &model.tables {
        let _ = writeln!(out, "    {} {{", t.name);
        for c in &t.columns {
            let mut parts = vec![c.data_type.clone(), c.name.clone()];
            if !c.keys.is_empty() {
                parts.push(c.keys.iter().copied().collect::<Vec<_>>().join(", "));
            }
            if c.nullable {
                parts.push("\"null\"".to_owned());
            }
            let _ = writeln!(out, "        {}", parts.join(" "));
        }
        out.push_str("    }\n");
    }
    for r in &model.relations {
        let _ = writeln!(out, "    {} {} {} : {}", r.parent, cardinality(r), r.child, label(r));
    }
    out.push_str("```\n");
    out
}

fn uml(model: &Model) -> String {
    let mut out = String::from(HEADER);
    out.push_str("# UML class diagram\n\nEach table as a class in its domain's namespace; associations are the foreign keys, with multiplicities.\n\n```mermaid\nclassDiagram\n");
    let domains: BTreeSet<&str> = model.tables.iter().map(|t| t.domain.as_str()).collect();
    for domain in domains {
        let _ = writeln!(out, "    namespace {domain} {{");
        for t in model.tables.iter().filter(|t| t.domain == domain) {
            let _ = writeln!(out, "        class {} {{", t.name);
            for c in &t.columns {
                let optional = if c.nullable { "?" } else { "" };
                let _ = writeln!(out, "            +{}{} {}", c.data_type, optional, c.name);
            }
            out.push_str("        }\n");
        }
        out.push_str("    }\n");
    }
    for r in &model.relations {
        let parent_mult = if r.mandatory { "1" } else { "0..1" };
        let child_mult = if r.one_to_one { "0..1" } else { "*" };
        let _ = writeln!(
            out,
            "    {} \"{}\" <-- \"{}\" {} : {}",
            r.parent,
            parent_mult,
            child_mult,
            r.child,
            r.columns.join("_")
        );
    }
    out.push_str("```\n");
    out
}

fn index(model: &Model) -> String {
    let mut out = String::from(HEADER);
    let _ = writeln!(
        out,
        "# Schema diagrams\n\n{} tables, {} foreign keys, read from the database migrated by `migrations/`.\n\n- [Conceptual model (MCD), per domain](conceptual.md)\n- [Logical model (MLD), every column and key](logical.md)\n- [UML class diagram](uml.md)\n\n| Domain | Tables |\n| --- | --- |",
        model.tables.len(),
        model.relations.len()
    );
    let mut by_domain: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for t in &model.tables {
        by_domain.entry(&t.domain).or_default().push(&t.name);
    }
    for (domain, tables) in by_domain {
        let _ =
            writeln!(out, "| {domain} | {} |", tables.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", "));
    }
    out
}

/// The files of `docs/schema/`, by name.
pub async fn render(pool: &PgPool) -> Result<Vec<(&'static str, String)>> {
    let model = read(pool).await?;
    Ok(vec![
        ("README.md", index(&model)),
        ("conceptual.md", conceptual(&model)),
        ("logical.md", logical(&model)),
        ("uml.md", uml(&model)),
    ])
}
