//! A check that a CRD's OpenAPI schema is *structural*, as the API server requires of every
//! `apiextensions.k8s.io/v1` CRD (see "Specifying a structural schema" in the Kubernetes
//! documentation):
//!
//! 1. every node (properties, `items`, `additionalProperties`) has a non-empty `type`, unless it
//!    is `x-kubernetes-int-or-string` or `x-kubernetes-preserve-unknown-fields`;
//! 2. inside `allOf`, `anyOf`, `oneOf` and `not`, no `type`, `additionalProperties`,
//!    `description`, `default`, `nullable` or `x-kubernetes-*` appears, and every property named
//!    there is also declared outside;
//! 3. no `$ref`, `definitions` or `$defs` remain (everything is inlined);
//! 4. `properties` and `additionalProperties` are never both set, and `metadata` at the root
//!    restricts nothing but `name` and `generateName`.
//!
//! It also checks that every property carries a `description`, so `kubectl explain` documents
//! every field.

use serde_json::Value;

/// Every violation found, each with the JSON path where it is.
pub fn violations(schema: &Value) -> Vec<String> {
    let mut out = Vec::new();
    node(schema, "", true, &mut out);
    out
}

const FORBIDDEN_IN_JUNCTOR: &[&str] = &["type", "additionalProperties", "description", "default", "nullable"];

fn node(schema: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    let Some(map) = schema.as_object() else {
        out.push(format!("{path}: not an object schema"));
        return;
    };
    for key in ["$ref", "definitions", "$defs"] {
        if map.contains_key(key) {
            out.push(format!("{path}: has {key}"));
        }
    }
    let exempt = map.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true))
        || map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    match map.get("type").and_then(Value::as_str) {
        Some(t) if !t.is_empty() => {}
        _ if exempt => {}
        _ => out.push(format!("{path}: no type")),
    }
    if map.contains_key("properties") && map.contains_key("additionalProperties") {
        out.push(format!("{path}: both properties and additionalProperties"));
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for (name, child) in props {
            let child_path = format!("{path}.{name}");
            if root && name == "metadata" {
                metadata(child, &child_path, out);
                continue;
            }
            if !root && child.get("description").and_then(Value::as_str).is_none_or(str::is_empty) {
                out.push(format!("{child_path}: no description"));
            }
            node(child, &child_path, false, out);
        }
    }
    if let Some(items) = map.get("items") {
        node(items, &format!("{path}[]"), false, out);
    }
    if let Some(extra) = map.get("additionalProperties")
        && extra.is_object()
    {
        node(extra, &format!("{path}{{}}"), false, out);
    }
    let declared: Vec<&String> =
        map.get("properties").and_then(Value::as_object).map(|p| p.keys().collect()).unwrap_or_default();
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if let Some(branches) = map.get(junctor).and_then(Value::as_array) {
            for (i, branch) in branches.iter().enumerate() {
                junctor_branch(branch, &format!("{path}.{junctor}[{i}]"), &declared, out);
            }
        }
    }
    if let Some(not) = map.get("not") {
        junctor_branch(not, &format!("{path}.not"), &declared, out);
    }
}

fn junctor_branch(branch: &Value, path: &str, declared: &[&String], out: &mut Vec<String>) {
    let Some(map) = branch.as_object() else { return };
    for key in map.keys() {
        if FORBIDDEN_IN_JUNCTOR.contains(&key.as_str()) || key.starts_with("x-kubernetes-") || key == "$ref" {
            out.push(format!("{path}: {key} inside a logical junctor"));
        }
    }
    if let Some(props) = map.get("properties").and_then(Value::as_object) {
        for name in props.keys() {
            if !declared.contains(&name) {
                out.push(format!("{path}: property {name} only declared inside a logical junctor"));
            }
        }
    }
}

fn metadata(schema: &Value, path: &str, out: &mut Vec<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for name in props.keys() {
            if name != "name" && name != "generateName" {
                out.push(format!("{path}.{name}: metadata may only restrict name and generateName"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_property_without_type_is_reported() {
        let schema = json!({"type": "object", "properties": {"a": {"description": "x"}}});
        assert_eq!(violations(&schema), vec![".a: no type"]);
    }

    #[test]
    fn a_type_inside_any_of_is_reported() {
        let schema = json!({"type": "object", "anyOf": [{"type": "string"}]});
        assert_eq!(violations(&schema), vec![".anyOf[0]: type inside a logical junctor"]);
    }

    #[test]
    fn a_property_only_inside_one_of_is_reported() {
        let schema = json!({"type": "object", "oneOf": [{"required": ["b"], "properties": {"b": {}}}]});
        assert_eq!(violations(&schema), vec![".oneOf[0]: property b only declared inside a logical junctor"]);
    }

    #[test]
    fn int_or_string_and_required_only_junctors_are_fine() {
        let schema = json!({
            "type": "object",
            "properties": {
                "q": {"x-kubernetes-int-or-string": true, "description": "a quantity"},
                "a": {"type": "string", "description": "a"},
                "b": {"type": "string", "description": "b"}
            },
            "oneOf": [{"required": ["a"]}, {"required": ["b"]}]
        });
        assert!(violations(&schema).is_empty());
    }

    #[test]
    fn a_field_without_description_is_reported() {
        let spec = json!({"type": "object", "description": "s", "properties": {"a": {"type": "string"}}});
        let schema = json!({"type": "object", "properties": {"spec": spec}});
        assert_eq!(violations(&schema), vec![".spec.a: no description"]);
    }

    #[test]
    fn refs_are_reported() {
        let schema = json!({"type": "object", "properties": {"a": {"$ref": "#/definitions/A", "description": "a"}}});
        assert_eq!(violations(&schema), vec![".a: has $ref", ".a: no type"]);
    }
}
