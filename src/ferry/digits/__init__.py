"""The handwritten-digit classifier: RecordIO data, training, the endpoint, the API."""
