/* crm.h: the CRM routes — contacts (crm.c) and notifications (notify.c). */
#ifndef OSB_APPS_CRM_H
#define OSB_APPS_CRM_H

/* Register the contact and notification routes and declare their
 * statements. After osb_db_init and the realtime hub, before the server
 * starts. */
void osb_crm_routes(void);

#endif
