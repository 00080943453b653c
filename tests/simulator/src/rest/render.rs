//! Records as the REST API shapes them (protocol §1.2): scalars under `attributes` (floats as strings,
//! datetimes `YYYY-MM-DDTHH:MM:SSZ`, dotted fields flat under their dotted key), `entity` and
//! `multi_entity` fields under `relationships` as `{data, links}`, links as `{id, name, type}`.

use serde_json::{Map, Value as Json, json};
use shotgun_cache_core::model::{DataType, EntityRef, Value};

use crate::site::{Row, slug};

/// A float as REST renders it: rounded to 6 decimals, as a string (`"0.04"`, `"2.0"`).
pub fn float_str(f: f64) -> String {
    let s = format!("{f:.6}");
    let t = s.trim_end_matches('0');
    if t.ends_with('.') {
        format!("{t}0")
    } else {
        t.to_owned()
    }
}

fn link(r: &EntityRef) -> Json {
    json!({"id": r.id, "name": r.name, "type": r.entity_type})
}

/// One value in REST form.
pub fn rest_value(dt: DataType, v: &Value) -> Json {
    match v {
        Value::Float(f) if matches!(dt, DataType::Float | DataType::Currency) => {
            Json::String(float_str(*f))
        }
        Value::Entity(r) => link(r),
        Value::MultiEntity(l) => Json::Array(l.iter().map(link).collect()),
        other => other.to_json(),
    }
}

/// The REST record for a row.
pub fn record(row: &Row) -> Json {
    let s = slug(&row.entity_type);
    let mut attributes = Map::new();
    let mut relationships = Map::new();
    for f in &row.fields {
        if !f.deep && f.data_type.is_link() {
            let mut rel = Map::new();
            rel.insert("data".into(), rest_value(f.data_type, &f.value));
            let mut links = Map::new();
            links.insert(
                "self".into(),
                Json::String(format!(
                    "/api/v1/entity/{s}/{}/relationships/{}",
                    row.id, f.name
                )),
            );
            if let Value::Entity(r) = &f.value {
                links.insert(
                    "related".into(),
                    Json::String(format!("/api/v1/entity/{}/{}", slug(&r.entity_type), r.id)),
                );
            }
            rel.insert("links".into(), Json::Object(links));
            relationships.insert(f.name.clone(), Json::Object(rel));
        } else {
            attributes.insert(f.name.clone(), rest_value(f.data_type, &f.value));
        }
    }
    json!({
        "type": row.entity_type,
        "attributes": attributes,
        "relationships": relationships,
        "id": row.id,
        "links": {"self": format!("/api/v1/entity/{s}/{}", row.id)},
    })
}

#[cfg(test)]
mod tests {
    use super::float_str;

    #[test]
    fn floats_render_like_the_site() {
        assert_eq!(float_str(0.04), "0.04");
        assert_eq!(float_str(2.0), "2.0");
        assert_eq!(float_str(1.2345678), "1.234568");
        assert_eq!(float_str(-1.5), "-1.5");
    }
}
