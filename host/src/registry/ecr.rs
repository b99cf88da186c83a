//! Amazon ECR logins without a helper binary.
//!
//! kaniko's images bundle `docker-credential-ecr-login`, and its documented ECR setup is a
//! `config.json` naming that helper for the registry. kiln's executor image carries no helper,
//! so when `config.json` names `ecr-login` and the helper is not installed, kiln does what it
//! would: calls ECR's `GetAuthorizationToken` with the AWS credentials of the environment
//! (the same sources the `s3://` context reads: `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/
//! `AWS_SESSION_TOKEN`, the shared credentials file for `AWS_PROFILE`, web identity (EKS
//! service accounts), container and instance credentials), signed with SigV4, and uses the
//! `AWS:<password>` it answers as Basic credentials.
//!
//! The region comes from the registry host (`<account>.dkr.ecr.<region>.amazonaws.com`), else
//! `AWS_REGION`/`AWS_DEFAULT_REGION`; the endpoint is ECR's for that region unless
//! `AWS_ENDPOINT_URL_ECR` (or `AWS_ENDPOINT_URL`) names another, as the AWS tools allow.

use std::sync::Arc;

use base64::Engine as _;
use object_store::aws::{AmazonS3Builder, AwsAuthorizer, AwsCredential};
use serde::Deserialize;

use super::options::{connect_timeout, read_timeout, USER_AGENT};

/// The helper name kaniko's ECR examples use.
pub(crate) fn is_ecr_helper(name: &str) -> bool {
    name == "ecr-login"
}

/// The region of an ECR registry host (`<account>.dkr.ecr[-fips].<region>.amazonaws.com[.cn]`).
pub(crate) fn region_of(registry: &str) -> Option<String> {
    let host = registry
        .rsplit_once(':')
        .map_or(registry, |(h, _)| h)
        .to_ascii_lowercase();
    let rest = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
    let mut parts = rest.split('.');
    let (_account, dkr, ecr, region) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (dkr == "dkr" && (ecr == "ecr" || ecr == "ecr-fips") && parts.next().is_none())
        .then(|| region.to_string())
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
struct Answer {
    #[serde(rename = "authorizationData", default)]
    authorization_data: Vec<AuthorizationData>,
}

#[derive(Deserialize)]
struct AuthorizationData {
    #[serde(rename = "authorizationToken")]
    authorization_token: String,
}

/// A user name and password for `registry` from ECR, and a description of where they came
/// from (never the secret).
pub(crate) async fn login(registry: &str) -> Result<(String, String, String), String> {
    let region = region_of(registry)
        .or_else(|| env("AWS_REGION"))
        .or_else(|| env("AWS_DEFAULT_REGION"))
        .ok_or_else(|| {
            format!("{registry} is not an ECR host and neither AWS_REGION nor AWS_DEFAULT_REGION is set")
        })?;
    let endpoint = env("AWS_ENDPOINT_URL_ECR")
        .or_else(|| env("AWS_ENDPOINT_URL"))
        .unwrap_or_else(|| {
            let suffix = if registry.contains(".amazonaws.com.cn") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("https://api.ecr.{region}.{suffix}")
        });
    let endpoint = format!("{}/", endpoint.trim_end_matches('/'));
    let credential = aws_credential(&region).await?;
    let token = get_authorization_token(&endpoint, &region, &credential).await?;
    let (user, password) = token.split_once(':').ok_or_else(|| {
        format!("GetAuthorizationToken at {endpoint}: the token is not user:password")
    })?;
    Ok((
        user.to_string(),
        password.to_string(),
        format!("ECR GetAuthorizationToken at {endpoint} (region {region})"),
    ))
}

/// The AWS credentials of the environment, as the `s3://` context finds them.
async fn aws_credential(region: &str) -> Result<Arc<AwsCredential>, String> {
    // the S3 builder resolves the AWS credential chain; the bucket name is never used
    let mut builder = AmazonS3Builder::from_env()
        .with_bucket_name("kiln-ecr-login")
        .with_region(region);
    if env("AWS_ACCESS_KEY_ID").is_none() {
        if let Some((id, secret, token)) = crate::context::s3::shared_credentials() {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
        }
    }
    let store = builder
        .build()
        .map_err(|e| format!("AWS credentials: {e}"))?;
    store
        .credentials()
        .get_credential()
        .await
        .map_err(|e| format!("no AWS credentials for ECR: {e}"))
}

/// Calls `GetAuthorizationToken` at `endpoint`, signed with `credential`, and returns the
/// decoded token (`user:password`).
async fn get_authorization_token(
    endpoint: &str,
    region: &str,
    credential: &AwsCredential,
) -> Result<String, String> {
    let body = b"{}".to_vec();
    let mut request: object_store::client::HttpRequest = http::Request::builder()
        .method("POST")
        .uri(endpoint)
        .header("content-type", "application/x-amz-json-1.1")
        .header(
            "x-amz-target",
            "AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken",
        )
        .body(body.clone().into())
        .map_err(|e| format!("ECR endpoint {endpoint}: {e}"))?;
    AwsAuthorizer::new(credential, "ecr", region)
        .try_authorize(&mut request, None)
        .map_err(|e| format!("signing the ECR request: {e}"))?;

    let http = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .connect_timeout(connect_timeout())
        .read_timeout(read_timeout())
        .build()
        .map_err(|e| format!("setting up an HTTP client: {e}"))?;
    let mut outgoing = http.post(endpoint).body(body);
    for (name, value) in request.headers() {
        outgoing = outgoing.header(name.as_str(), value.as_bytes());
    }
    let response = outgoing
        .send()
        .await
        .map_err(|e| format!("GetAuthorizationToken at {endpoint}: {e}"))?;
    let status = response.status();
    if !status.is_success() {
        let text = response.text().await.unwrap_or_default();
        let said: String = text.chars().take(300).collect();
        return Err(format!(
            "GetAuthorizationToken at {endpoint} answered {status}: {said}"
        ));
    }
    let answer: Answer = response
        .json()
        .await
        .map_err(|e| format!("GetAuthorizationToken at {endpoint}: unexpected answer: {e}"))?;
    let token = answer
        .authorization_data
        .first()
        .ok_or_else(|| format!("GetAuthorizationToken at {endpoint} returned no token"))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token.authorization_token.trim())
        .map_err(|_| format!("GetAuthorizationToken at {endpoint}: the token is not base64"))?;
    String::from_utf8(decoded)
        .map_err(|_| format!("GetAuthorizationToken at {endpoint}: the token is not text"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_region_of_ecr_hosts() {
        assert_eq!(
            region_of("123456789012.dkr.ecr.eu-west-1.amazonaws.com").as_deref(),
            Some("eu-west-1")
        );
        assert_eq!(
            region_of("123456789012.dkr.ecr-fips.us-east-1.amazonaws.com:443").as_deref(),
            Some("us-east-1")
        );
        assert_eq!(
            region_of("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").as_deref(),
            Some("cn-north-1")
        );
        for other in [
            "gcr.io",
            "public.ecr.aws",
            "s3.amazonaws.com",
            "127.0.0.1:5000",
        ] {
            assert_eq!(region_of(other), None, "{other}");
        }
    }
}
