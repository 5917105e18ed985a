/* modelgate — the authorize, filter_input and limits stages.
 *
 * authorize resolves the model the client asked for against the configured
 * models and checks the principal may use it. Role allowlists, content
 * filters and budgets are evaluated here once role policies exist; a
 * principal without a policy is only the master key, which may use every
 * model and has no limits.
 *
 * SPDX-License-Identifier: Apache-2.0
 */
#include "gateway/pipeline.h"

#include <stdio.h>

bool mg_policy_model_allowed(const mg_req *req, const mg_cfg_model *m)
{
    MG_UNUSED(m);
    return req->principal.master;
}

mg_stage_rc mg_policy_authorize_stage(mg_req *req)
{
    if (req->api == MG_API_MODELS)
        return MG_STAGE_NEXT;
    const mg_config *cfg = req->snap->cfg;
    req->model = mg_config_model(cfg, req->model_name, strlen(req->model_name));
    if (req->model == NULL) {
        char msg[200];
        snprintf(msg, sizeof(msg), "model \"%.100s\" is not configured on this gateway",
                 req->model_name);
        mg_req_respond_error(req, 404, "invalid_request_error", "model_not_found", msg, 0);
        return MG_STAGE_RESPONDED;
    }
    if (!mg_policy_model_allowed(req, req->model)) {
        mg_req_respond_error(req, 403, "permission_error", "model_not_allowed",
                             "no role grants this model", 0);
        return MG_STAGE_RESPONDED;
    }
    return MG_STAGE_NEXT;
}

mg_stage_rc mg_policy_filter_input_stage(mg_req *req)
{
    MG_UNUSED(req);
    return MG_STAGE_NEXT;
}

mg_stage_rc mg_policy_limits_stage(mg_req *req)
{
    MG_UNUSED(req);
    return MG_STAGE_NEXT;
}
