"""The demo bank: a small retail bank behind ``dialplans/bank.yaml``, so the demo dialplan does real things."""
