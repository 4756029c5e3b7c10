"""The cheapest request a generator can send: GET /v1/models as fast as possible (capacity)."""

import os

from locust import FastHttpUser, task


class Flood(FastHttpUser):
    @task
    def models(self) -> None:
        self.client.get("/models", headers={"authorization": f"Bearer {os.environ['OP_API_KEY']}"})
