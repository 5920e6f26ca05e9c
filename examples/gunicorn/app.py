"""A minimal Flask app for keepup's gunicorn recipe."""
import os
import time

from flask import Flask

app = Flask(__name__)


@app.get("/")
def index():
    return {"msg": "running"}


@app.get("/slow")
def slow():
    # A request that takes 2 s; the marker lets a test know it is in progress.
    open(os.path.join(os.path.dirname(__file__), "slow.started"), "w").close()
    time.sleep(2)
    return {"msg": "slow done"}
