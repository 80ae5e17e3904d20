"""The web demo as a Hugging Face Space (or `python app.py`): the same app as `keypoints demo`.

A Gradio Space runs this file; locally, `python app.py` serves it on http://127.0.0.1:7860.
"""

import os

from keypoints.demo import launch

if __name__ == "__main__":
    # a Space sets GRADIO_SERVER_NAME=0.0.0.0; locally the page stays on this machine
    launch(
        host=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        port=int(os.environ.get("GRADIO_SERVER_PORT", "7860")),
    )
