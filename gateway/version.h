/* version.h - the release this tree builds */
#ifndef SY_VERSION_H
#define SY_VERSION_H

#define SWITCHYARD_VERSION "0.1.0"

#endif
