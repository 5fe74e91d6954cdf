"""Azure Functions app: Event Grid BlobCreated -> retier. All logic lives in the retier package."""

import azure.functions as func

from retier.functions import handle_grid_event

app = func.FunctionApp()


@app.function_name(name="retier_blob_created")
@app.event_grid_trigger(arg_name="event")
def retier_blob_created(event: func.EventGridEvent) -> None:
    # Settings errors and transient storage failures raise: the host answers non-2xx and Event
    # Grid redelivers with back-off, so no event is lost while the cause is fixed. Everything
    # else (acted on, deliberately ignored, permanently failed) is logged by the service.
    handle_grid_event(event)
