//! The `generated` rotator: a new random value from the root of trust's generator, either a
//! password or a JSON template whose string fields equal to `{{generate}}` each get one. It
//! has no target system, so set_secret and test_secret have nothing to do.

use super::{BoxFuture, RotationError, Rotator, StepContext};
use crate::crypto::SecretBytes;
use crate::service::secrets::Value;
use crate::store::PasswordPolicy;
use serde_json::Value as Json;

const MARKER: &str = "{{generate}}";
/// Fields one template may generate: each is a password's worth of hardware calls.
const MAX_MARKERS: usize = 32;

pub struct Generated {
    pub password: PasswordPolicy,
    pub template: Option<String>,
}

/// A template must be a JSON object with at least one marker.
pub fn check_template(template: &str) -> Result<(), String> {
    let json: Json =
        serde_json::from_str(template).map_err(|e| format!("template is not JSON: {e}"))?;
    if !json.is_object() {
        return Err("template must be a JSON object".into());
    }
    match markers(&json) {
        0 => Err(format!("template has no {MARKER:?} field to generate")),
        n if n > MAX_MARKERS => Err(format!(
            "template has {n} {MARKER:?} fields; at most {MAX_MARKERS}"
        )),
        _ => Ok(()),
    }
}

fn markers(json: &Json) -> usize {
    match json {
        Json::String(s) => usize::from(s == MARKER),
        Json::Array(items) => items.iter().map(markers).sum(),
        Json::Object(fields) => fields.values().map(markers).sum(),
        _ => 0,
    }
}

impl Generated {
    async fn password(&self, ctx: &StepContext<'_>) -> Result<String, RotationError> {
        let bytes = ctx
            .secrets
            .get_random_password(self.password.clone())
            .await?;
        // The generator draws from printable ASCII only.
        String::from_utf8(bytes.expose().to_vec())
            .map_err(|_| RotationError::Failed("generated password is not text".into()))
    }

    async fn fill(&self, ctx: &StepContext<'_>, json: &mut Json) -> Result<(), RotationError> {
        let mut stack = vec![json];
        while let Some(node) = stack.pop() {
            match node {
                Json::String(s) if s == MARKER => *s = self.password(ctx).await?,
                Json::Array(items) => stack.extend(items.iter_mut()),
                Json::Object(fields) => stack.extend(fields.values_mut()),
                _ => {}
            }
        }
        Ok(())
    }
}

impl Rotator for Generated {
    fn create_value<'a>(
        &'a self,
        ctx: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<Option<Value>, RotationError>> {
        Box::pin(async move {
            let text = match &self.template {
                None => self.password(ctx).await?,
                Some(template) => {
                    // Checked again: the template was stored under the rules of its day.
                    check_template(template).map_err(RotationError::Failed)?;
                    let mut json: Json = serde_json::from_str(template)
                        .map_err(|e| RotationError::Failed(format!("template: {e}")))?;
                    self.fill(ctx, &mut json).await?;
                    json.to_string()
                }
            };
            Ok(Some(Value::String(SecretBytes::new(text.into_bytes()))))
        })
    }

    fn set_secret<'a>(
        &'a self,
        _: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>> {
        Box::pin(async { Ok(()) })
    }

    fn test_secret<'a>(
        &'a self,
        _: &'a StepContext<'a>,
    ) -> BoxFuture<'a, Result<(), RotationError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_need_an_object_with_a_marker() {
        assert!(check_template(r#"{"username":"app","password":"{{generate}}"}"#).is_ok());
        assert!(check_template(r#"{"nested":{"keys":["{{generate}}"]}}"#).is_ok());
        assert!(check_template(r#"{"username":"app"}"#).is_err());
        assert!(check_template(r#"["{{generate}}"]"#).is_err());
        assert!(check_template("not json").is_err());
    }

    #[test]
    fn a_template_generates_a_bounded_number_of_fields() {
        let fields = |n: usize| {
            let list: Vec<String> = (0..n).map(|_| format!("\"{MARKER}\"")).collect();
            format!(r#"{{"keys":[{}]}}"#, list.join(","))
        };
        assert!(check_template(&fields(MAX_MARKERS)).is_ok());
        let refused = check_template(&fields(MAX_MARKERS + 1)).unwrap_err();
        assert!(refused.contains("at most 32"), "{refused}");
    }
}
