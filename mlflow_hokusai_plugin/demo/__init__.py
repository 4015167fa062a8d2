"""``hokusai demo`` and the embedded ``mlflow server`` it (and the test suite) starts."""
