#!/bin/sh
# One-shot job of docker-compose.yml (service minio-init, image minio/mc): the artifacts bucket
# and the server's own S3 user, allowed that bucket only. Safe to rerun: it runs on every `up`.
set -eu

bucket="$HOKUSAI_ARTIFACTS_BUCKET"
mc alias set stack http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null

mc mb --ignore-existing "stack/$bucket"
# Versioning: an artifact overwritten or deleted by mistake can still be recovered.
mc version enable "stack/$bucket"

# The server holds these credentials, not the root ones: a leaked server environment exposes
# the artifacts, not the rest of MinIO nor its administration.
policy=/tmp/hokusai-artifacts-policy.json
cat >"$policy" <<POLICY
{
  "Version": "2012-10-17",
  "Statement": [
    {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
     "Resource": ["arn:aws:s3:::$bucket"]},
    {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                                   "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
     "Resource": ["arn:aws:s3:::$bucket/*"]}
  ]
}
POLICY
mc admin policy create stack hokusai-artifacts "$policy"
# Adding an existing user updates its secret key, so a changed HOKUSAI_S3_SECRET_KEY takes effect.
mc admin user add stack "$HOKUSAI_S3_ACCESS_KEY" "$HOKUSAI_S3_SECRET_KEY"
# Attaching a policy that is already attached is an error on a rerun; what matters is the end
# state, checked right after.
mc admin policy attach stack hokusai-artifacts --user "$HOKUSAI_S3_ACCESS_KEY" >/dev/null 2>&1 || true
if ! mc admin user info stack "$HOKUSAI_S3_ACCESS_KEY" | grep -q 'hokusai-artifacts'; then
    echo "minio-init: policy hokusai-artifacts is not attached to $HOKUSAI_S3_ACCESS_KEY" >&2
    exit 1
fi
echo "minio-init: bucket $bucket and user $HOKUSAI_S3_ACCESS_KEY ready"
