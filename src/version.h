#ifndef KVMINI_VERSION_H
#define KVMINI_VERSION_H
#define KVMINI_VERSION "0.1.0"
#endif
