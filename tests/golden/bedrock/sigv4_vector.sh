#!/bin/bash
# Used to derive the expected values in tests/unit/test_adapters.c (sigv4_known_vector):
#   tests/golden/bedrock/sigv4_vector.sh; TOKEN=FQoGZXIvYXdzEXAMPLETOKEN tests/golden/bedrock/sigv4_vector.sh
# SPDX-License-Identifier: Apache-2.0
# Hand-derives an AWS SigV4 signature with the openssl CLI (no AWS SDK).
set -euo pipefail
SECRET='wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY'
DATE=20240115; AMZ=20240115T120000Z; REGION=us-east-1; SERVICE=bedrock
HOST=bedrock-runtime.us-east-1.amazonaws.com
PAYLOAD='{"messages":[]}'
TOKEN=${TOKEN:-}
PH=$(printf '%s' "$PAYLOAD" | openssl dgst -sha256 -hex | sed 's/^.* //')
if [ -n "$TOKEN" ]; then
  SH='host;x-amz-content-sha256;x-amz-date;x-amz-security-token'
  CH=$(printf 'host:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\nx-amz-security-token:%s\n' "$HOST" "$PH" "$AMZ" "$TOKEN")
else
  SH='host;x-amz-content-sha256;x-amz-date'
  CH=$(printf 'host:%s\nx-amz-content-sha256:%s\nx-amz-date:%s\n' "$HOST" "$PH" "$AMZ")
fi
# canonical URI: the path as sent (%3A) encoded once more (%253A)
CREQ=$(printf 'POST\n/model/anthropic.claude-3-haiku-20240307-v1%%253A0/converse\n\n%s\n\n%s\n%s' "$CH" "$SH" "$PH")
CRH=$(printf '%s' "$CREQ" | openssl dgst -sha256 -hex | sed 's/^.* //')
STS=$(printf 'AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s' "$AMZ" "$DATE" "$REGION" "$SERVICE" "$CRH")
hm() { openssl dgst -sha256 -mac HMAC -macopt "$1" | sed 's/^.* //'; }
K1=$(printf '%s' "$DATE" | hm "key:AWS4$SECRET")
K2=$(printf '%s' "$REGION" | hm "hexkey:$K1")
K3=$(printf '%s' "$SERVICE" | hm "hexkey:$K2")
K4=$(printf '%s' "aws4_request" | hm "hexkey:$K3")
SIG=$(printf '%s' "$STS" | hm "hexkey:$K4")
echo "payload_hash=$PH"
echo "signature=$SIG"
