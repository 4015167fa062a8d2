import mlflow


def test_run_and_artifact_reach_postgres_and_s3(tracking_uri, s3, tmp_path):
    mlflow.set_experiment("smoke")
    (tmp_path / "hello.txt").write_text("hi")
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.5)
        mlflow.log_artifact(str(tmp_path / "hello.txt"))
    got = mlflow.get_run(run.info.run_id)
    assert got.data.metrics["accuracy"] == 0.5
    keys = [o["Key"] for o in s3.client().list_objects_v2(Bucket=s3.bucket).get("Contents", [])]
    assert any(k.endswith("hello.txt") for k in keys)
