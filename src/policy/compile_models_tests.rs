//! How a Bedrock model id names its vendor, which a Bedrock pool's targets must share.

use super::bedrock_vendor;

#[test]
fn the_vendor_is_the_first_segment_after_a_region_prefix() {
    for (model, vendor) in [
        ("anthropic.claude-v2:1", Some("anthropic")),
        ("meta.llama3-70b-instruct-v1:0", Some("meta")),
        ("us.anthropic.claude-3-5-sonnet-20240620-v1:0", Some("anthropic")),
        ("global.anthropic.claude-sonnet-4-20250514-v1:0", Some("anthropic")),
        ("apac.amazon.nova-pro-v1:0", Some("amazon")),
        (
            "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-v2",
            Some("anthropic"),
        ),
        (
            "arn:aws:bedrock:eu-west-1:123456789012:inference-profile/eu.meta.llama3-2-1b-instruct-v1:0",
            Some("meta"),
        ),
        // Opaque ids name no vendor.
        (
            "arn:aws:bedrock:us-east-1:123456789012:provisioned-model/abc123xyz",
            None,
        ),
        ("claude", None),
        ("us.claude", None),
        ("Anthropic.claude", None),
        ("", None),
    ] {
        assert_eq!(bedrock_vendor(model), vendor, "{model}");
    }
}
